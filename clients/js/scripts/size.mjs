// Prints the size of dist/presence.min.js, raw (minified) and gzipped, and fails (exit 1)
// when the gzipped size is over the budget.
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';

const BUDGET_GZIP = 5 * 1024; // bytes, min+gzip

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
if (gzip > BUDGET_GZIP) {
  console.error(`over budget: ${gzip} B min+gzip > ${BUDGET_GZIP} B (${kb(BUDGET_GZIP)})`);
  process.exit(1);
}
console.log(`budget: ${BUDGET_GZIP} B min+gzip, ${BUDGET_GZIP - gzip} B left`);
