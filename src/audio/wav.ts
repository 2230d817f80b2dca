/** WAV files ↔ PCM16 mono, through `wavefile`. */
import wavefilePkg from 'wavefile';

const { WaveFile } = wavefilePkg;

export interface PcmAudio {
  samples: Int16Array;
  sampleRate: number;
}

/** Reads any PCM, µ-law or A-law WAV and returns mono PCM16 (first channel). */
export function readWav(bytes: Uint8Array): PcmAudio {
  const wav = new WaveFile(bytes);
  const format = wav.fmt as { audioFormat: number; sampleRate: number; numChannels: number };
  if (format.audioFormat === 7) wav.fromMuLaw();
  else if (format.audioFormat === 6) wav.fromALaw();
  if (wav.bitDepth !== '16') wav.toBitDepth('16');
  const channels = format.numChannels;
  const interleaved = wav.getSamples(true, Int16Array) as unknown as Int16Array;
  if (channels === 1) return { samples: interleaved, sampleRate: format.sampleRate };
  const mono = new Int16Array(Math.floor(interleaved.length / channels));
  for (let i = 0; i < mono.length; i++) mono[i] = interleaved[i * channels] ?? 0;
  return { samples: mono, sampleRate: format.sampleRate };
}

export function writeWav(audio: PcmAudio): Uint8Array {
  const wav = new WaveFile();
  wav.fromScratch(1, audio.sampleRate, '16', audio.samples);
  return wav.toBuffer();
}
