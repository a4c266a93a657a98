// The single-file build the service serves at /sdk/v1/: dist/presence.min.js (ESM, minified,
// internal names ending in `_` shortened) and dist/presence.min.d.ts (every public type in one
// file). `node scripts/bundle.mjs [out-dir]` writes both to out-dir (default: dist); `npm run
// vendor` writes them into the Python package, where a test checks they match a fresh build.
import { mkdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const typesToo = !args.includes('--js-only');
const out = resolve(root, args.find((a) => !a.startsWith('--')) ?? 'dist');
mkdirSync(out, { recursive: true });

await build({
  entryPoints: [resolve(root, 'src/index.ts')],
  bundle: true,
  minify: true,
  mangleProps: /_$/,
  format: 'esm',
  target: 'es2020',
  legalComments: 'none',
  outfile: resolve(out, 'presence.min.js'),
  logLevel: 'warning',
});

if (typesToo) {
  // Loaded only here: it pulls in the TypeScript compiler (a second or two).
  const { generateDtsBundle } = await import('dts-bundle-generator');
  const [types] = generateDtsBundle(
    [{ filePath: resolve(root, 'src/index.ts'), output: { noBanner: true } }],
    { preferredConfigPath: resolve(root, 'tsconfig.json') },
  );
  writeFileSync(resolve(out, 'presence.min.d.ts'), types);
}
console.log(`wrote ${out}/presence.min.js${typesToo ? ' and presence.min.d.ts' : ''}`);
