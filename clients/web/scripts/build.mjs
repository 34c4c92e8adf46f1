// Builds the chat page into dist/ and the tests into build/ (esbuild, no other tooling).
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, readdirSync, rmSync } from 'node:fs';

const root = new URL('../', import.meta.url).pathname;
const prod = {
  bundle: true,
  minify: true,
  sourcemap: true,
  target: ['es2022'],
  logLevel: 'warning',
};

rmSync(`${root}dist`, { recursive: true, force: true });
mkdirSync(`${root}dist`, { recursive: true });
await build({
  ...prod,
  entryPoints: [`${root}src/app.ts`],
  outfile: `${root}dist/app.js`,
  format: 'esm',
});
// The operator's admin page (admin.html), served beside the chat page.
await build({
  ...prod,
  entryPoints: [`${root}src/admin/main.ts`],
  outfile: `${root}dist/admin.js`,
  format: 'esm',
});
for (const file of ['index.html', 'style.css', 'admin.html', 'admin.css'])
  copyFileSync(`${root}${file}`, `${root}dist/${file}`);

// The conformance client (conformance/README.md), run by natter-conformance under node.
await build({
  entryPoints: [`${root}scripts/conformance-client.ts`],
  outfile: `${root}build/conformance-client.mjs`,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: ['node20'],
  sourcemap: 'inline',
  logLevel: 'warning',
});

// Tests run under node's own test runner as ES modules.
for (const dir of ['test', 'e2e']) {
  const entries = readdirSync(`${root}${dir}`)
    .filter((file) => file.endsWith('.test.ts'))
    .map((file) => `${root}${dir}/${file}`);
  rmSync(`${root}build/${dir}`, { recursive: true, force: true });
  await build({
    entryPoints: entries,
    outdir: `${root}build/${dir}`,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: ['node20'],
    packages: 'external',
    sourcemap: 'inline',
    logLevel: 'warning',
  });
}
