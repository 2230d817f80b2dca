#!/usr/bin/env node
// Runs before `npm start` and `npm test` (npm's pre-scripts), so that on a fresh Debian machine the
// two README commands are all it takes: installs the npm dependencies when they are missing, the
// Debian packages the local engines need (espeak-ng, pocketsphinx and its model, the build tools
// for the recognizer worker; pocketsphinx-testdata, sox and the Triton suite's python3-numpy,
// python3-protobuf and protobuf-compiler for tests), and builds the recognizer worker.
// Every step is skipped when already done, so it costs ~50 ms on a set-up machine.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const forTests = process.env.npm_lifecycle_event === 'pretest' || process.argv.includes('--tests');

const debianNeeds = [
  { pkg: 'espeak-ng', present: () => onPath('espeak-ng') },
  { pkg: 'pocketsphinx-en-us', present: () => existsSync('/usr/share/pocketsphinx/model/en-us/en-us/mdef') },
  { pkg: 'libpocketsphinx-dev', present: () => existsSync('/usr/include/pocketsphinx/pocketsphinx.h') },
  { pkg: 'libsphinxbase-dev', present: () => existsSync('/usr/include/x86_64-linux-gnu/sphinxbase/err.h') || existsSync('/usr/include/sphinxbase/err.h') },
  { pkg: 'pkg-config', present: () => onPath('pkg-config') },
  { pkg: 'gcc', present: () => onPath('gcc') },
  ...(forTests
    ? [
        { pkg: 'pocketsphinx-testdata', present: () => existsSync('/usr/share/pocketsphinx/test/data/librivox/transcription') },
        { pkg: 'sox', present: () => onPath('sox') },
        // The Triton model repository's Python suite (triton/tests): Debian's python3 with numpy and
        // protobuf, and protoc to compile model_config.proto.
        { pkg: 'python3-numpy', present: () => pythonImports('numpy') },
        { pkg: 'python3-protobuf', present: () => pythonImports('google.protobuf') },
        { pkg: 'protobuf-compiler', present: () => onPath('protoc') },
      ]
    : []),
];

function onPath(command) {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

function pythonImports(module) {
  return spawnSync('/usr/bin/python3', ['-c', `import ${module}`], { stdio: 'ignore' }).status === 0;
}

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { stdio: 'inherit', cwd: root, ...options });
  if (result.status !== 0) {
    console.error(`setup: \`${command} ${args.join(' ')}\` failed (exit ${result.status ?? result.signal})`);
    process.exit(1);
  }
}

if (!existsSync(join(root, 'node_modules', '.package-lock.json'))) {
  console.error('setup: installing npm dependencies (npm ci)…');
  // `npm ci` refuses a lock file that lacks optional platform packages the registry does not serve
  // (bullmq's msgpackr-extract builds for macOS/Windows/arm are missing from the mirror here); a
  // plain install then skips those optional packages and installs the locked versions of the rest.
  const ci = spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { stdio: 'inherit', cwd: root });
  if (ci.status !== 0) {
    console.error('setup: `npm ci` failed; falling back to `npm install --no-save`');
    run('npm', ['install', '--no-audit', '--no-fund', '--no-save']);
  }
}

const missing = debianNeeds.filter((need) => !need.present()).map((need) => need.pkg);
if (missing.length > 0) {
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const sudo = !isRoot && onPath('sudo') && spawnSync('sudo', ['-n', 'true'], { stdio: 'ignore' }).status === 0;
  if (!onPath('apt-get') || (!isRoot && !sudo)) {
    console.error(`setup: missing Debian packages: ${missing.join(' ')}\n  install them with: sudo apt-get install -y ${missing.join(' ')}`);
    process.exit(1);
  }
  const prefix = isRoot ? [] : ['sudo', '-n'];
  const apt = (args) => (prefix.length ? run(prefix[0], [...prefix.slice(1), 'apt-get', ...args]) : run('apt-get', args));
  console.error(`setup: installing Debian packages: ${missing.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const update = spawnSync(prefix[0] ?? 'apt-get', [...prefix.slice(1), ...(prefix.length ? ['apt-get'] : []), 'update', '-qq'], { stdio: 'inherit', env });
  if (update.status !== 0) console.error('setup: apt-get update failed; trying the install anyway');
  apt(['install', '-y', '-qq', '--no-install-recommends', ...missing]);
}

run('bash', [join(root, 'native', 'build.sh')], { stdio: ['ignore', 'ignore', 'inherit'] });
