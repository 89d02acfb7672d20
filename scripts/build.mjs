/**
 * `npm run build`, which `npm install` runs too (the `prepare` script): bundles
 * the service into dist/bin/main.mjs and the admin command into
 * dist/bin/admin.mjs, plain JavaScript for plain `node`, each started by a
 * small CommonJS entry (dist/bin/main.js, dist/bin/admin.js) that sizes
 * libuv's thread pool first (src/threadPool.ts says why). `--outdir=DIR` builds
 * into DIR instead (the process tests do); the bundle finds `drizzle/`,
 * `public/` and `node_modules/` relative to itself, so DIR must sit two levels
 * below the repository, as dist/bin does.
 */
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

// The esbuild that tsx runs on: tsx is a runtime dependency, so a production
// install (`npm ci --omit=dev`) has it, where a development-only esbuild is missing.
const fromTsx = createRequire(createRequire(import.meta.url).resolve('tsx/package.json'));
const esbuild = fromTsx('esbuild');

const outdir = process.argv.find((arg) => arg.startsWith('--outdir='))?.slice('--outdir='.length) ?? 'dist/bin';

await esbuild.build({
  absWorkingDir: root,
  entryPoints: ['src/main.ts', 'src/cli/admin.ts'],
  entryNames: '[name]',
  outdir,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // Dependencies stay in node_modules: PGlite loads its WebAssembly from beside
  // its own files, native addons theirs.
  packages: 'external',
  outExtension: { '.js': '.mjs' },
  sourcemap: true,
  logLevel: 'warning',
});

// The entries node runs: CommonJS (this directory's package.json says so), so
// the thread pool is sized before anything can start it.
writeFileSync(path.resolve(root, outdir, 'package.json'), '{ "type": "commonjs" }\n');
for (const name of ['main', 'admin']) {
  await esbuild.build({
    absWorkingDir: root,
    entryPoints: ['src/threadPool.ts'],
    outfile: path.resolve(root, outdir, `${name}.js`),
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    footer: { js: `import('./${name}.mjs');` },
    logLevel: 'warning',
  });
}
