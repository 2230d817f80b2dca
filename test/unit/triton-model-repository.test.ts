// Guards the Triton model repository (triton/): runs its Python suite, which parses every config.pbtxt
// against Triton's ModelConfig schema, checks the model contract, and drives the Python-backend
// model.py files through a stand-in of Triton's Python API with fake models.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

describe('Triton model repository', () => {
  it('passes its Python test suite (configs, parakeet_tdt and tts model.py)', () => {
    // Debian's python3 with python3-numpy, python3-protobuf and protobuf-compiler (scripts/ensure-setup.mjs).
    const run = spawnSync('/usr/bin/python3', ['-m', 'unittest', 'discover', '-s', 'triton/tests', '-v'], {
      cwd: root,
      encoding: 'utf8',
      timeout: 110_000,
      env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' },
    });
    if (run.status !== 0) {
      // unittest reports on stderr; show all of it so a CI log says which test broke and why.
      console.error(`python3 -m unittest exited with ${run.status ?? run.signal}\n${run.error?.message ?? ''}\n${run.stdout}\n${run.stderr}`);
    }
    expect(run.error).toBeUndefined();
    expect(run.status).toBe(0);
    expect(run.stderr).toMatch(/^OK/m);
  }, 120_000);
});
