/**
 * `npm run build`, which `npm install` runs too (the `prepare` script): bundles
 * the service into dist/bin/main.js and the admin command into
 * dist/bin/admin.js, plain JavaScript for plain `node`. `--outdir=DIR` builds
 * into DIR instead (the process tests do); the bundle finds `drizzle/`,
 * `public/` and `node_modules/` relative to itself, so DIR must sit two levels
 * below the repository, as dist/bin does.
 */
import { createRequire } from 'node:module';
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
  sourcemap: true,
  logLevel: 'warning',
});
