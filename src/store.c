/* store: placeholder */
