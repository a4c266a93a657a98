// Prints the size of dist/presence.min.js: raw (minified) and gzipped.
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';

const file = new URL('../dist/presence.min.js', import.meta.url);
let code;
try {
  code = readFileSync(file);
} catch {
  console.error('dist/presence.min.js not found: run `npm run build` first');
  process.exit(1);
}
const gzip = gzipSync(code, { level: 9 }).length;
const kb = (n) => `${(n / 1024).toFixed(2)} KiB`;
console.log(`dist/presence.min.js: ${code.length} B (${kb(code.length)}) minified, ${gzip} B (${kb(gzip)}) min+gzip`);
