#!/bin/sh
# Test tool: print invalid UTF-8 and binary bytes (0xFF 0xFE, a bad
# sequence 0xC3 0x28, a NUL, a lone continuation byte) between ASCII words.
printf 'start \377\376 mid \303\050 nul\000byte \200 end'
