#!/usr/bin/env node
// A persistent tool handler for streamvisor, no dependencies (see
// streamvisor-handlers(7)).  Calls are JSON lines on stdin; answers go to
// fd 3 as they finish, in any order.  It echoes the arguments back; an
// argument "sleep_ms" delays the answer, "fail" answers an error with
// that message.  HANDLER_SLEEP_MS sets a default delay.  EOF on stdin:
// finish the calls in flight, then exit.  With --once it is an exec tool
// instead: the arguments on stdin, the same answer on stdout, then exit.
'use strict';
const fs = require('fs');
const readline = require('readline');
const defaultSleep = Number(process.env.HANDLER_SLEEP_MS || 0);

if (process.argv.includes('--once')) {
  let a = fs.readFileSync(0, 'utf8'); try { a = JSON.parse(a); } catch (e) { /* a string */ }
  const o = a && typeof a === 'object' && !Array.isArray(a) ? a : {};
  setTimeout(() => {
    if ('fail' in o) { process.stderr.write(String(o.fail) + '\n'); process.exitCode = 1; }
    else process.stdout.write(JSON.stringify({ echo: a, pid: process.pid }));
  }, typeof o.sleep_ms === 'number' ? o.sleep_ms : defaultSleep);
  return;
}

const out = fs.createWriteStream(null, { fd: 3 });
const timers = new Map(); // id -> timer of a call in flight

const send = (msg) => out.write(JSON.stringify(msg) + '\n');

function answer(call) {
  timers.delete(call.id);
  const a = call.arguments;
  const opts = a && typeof a === 'object' && !Array.isArray(a) ? a : {};
  if ('fail' in opts) send({ id: call.id, error: { message: String(opts.fail) } });
  else send({ id: call.id, output: { echo: a, pid: process.pid } });
}

console.error(`handler.js ${process.pid} starting`);
send({ ready: true });
const rl = readline.createInterface({ input: process.stdin, terminal: false });
rl.on('line', (line) => {
  const msg = JSON.parse(line);
  if ('cancel' in msg) {
    if (timers.has(msg.cancel)) { // settle it: any answer, dropped by streamvisor
      clearTimeout(timers.get(msg.cancel));
      timers.delete(msg.cancel);
      send({ id: msg.cancel, error: { message: 'cancelled' } });
    }
    return;
  }
  const a = msg.arguments;
  const ms = a && typeof a.sleep_ms === 'number' ? a.sleep_ms : defaultSleep;
  timers.set(msg.id, setTimeout(() => answer(msg), ms));
});
// EOF: the pending timers keep the process alive until they fire; then
// end fd 3 so that everything written is flushed before exit.
rl.on('close', () => {
  const done = () => (timers.size ? setTimeout(done, 5) : out.end());
  done();
});
