import { execFileSync } from 'node:child_process';
import { PocketsphinxAsr } from '../../src/engines/local/pocketsphinx-asr.js';
import { loadResampler, resampleAll } from '../../src/audio/resampler.js';
import { readWav } from '../../src/audio/wav.js';
import { decodeG711, encodeG711 } from '../../src/audio/g711.js';
await loadResampler();
const asr = await PocketsphinxAsr.start({ workers: 1 });
for (const phrase of process.argv.slice(2)) {
  for (const voice of ['en-us', 'en-us+f3', 'en']) {
    const wav = readWav(execFileSync('espeak-ng', ['-v', voice, '--stdout', phrase]));
    const pcm = decodeG711('mulaw', encodeG711('mulaw', resampleAll(wav.samples, wav.sampleRate, 8000)));
    const padded = new Int16Array(pcm.length + 4000); padded.set(pcm, 2000);
    const text = await new Promise<string>((resolve) => {
      const s = asr.createStream('CAx' + voice, (e) => { if (e.type === 'final') resolve(e.text); if (e.type === 'error') resolve('ERR ' + e.error.message); });
      for (let i = 0; i < padded.length; i += 160) s.push(padded.subarray(i, i + 160));
      s.end();
    });
    console.log(JSON.stringify(phrase), voice, (pcm.length / 8).toFixed(0) + 'ms', '→', JSON.stringify(text));
  }
}
await asr.close();
