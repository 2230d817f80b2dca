/** Signal level of PCM16 audio. */

/** Digital silence: the level of an all-zero span. */
export const LEVEL_FLOOR_DBFS = -96;

/** RMS level in dBFS of `count` samples from `offset` (default: all of them); digital silence: −96. */
export function levelDbfs(samples: Int16Array, offset = 0, count = samples.length - offset): number {
  let sum = 0;
  for (let i = offset; i < offset + count; i++) sum += samples[i]! * samples[i]!;
  const rms = Math.sqrt(sum / Math.max(1, count));
  return rms === 0 ? LEVEL_FLOOR_DBFS : Math.max(LEVEL_FLOOR_DBFS, 20 * Math.log10(rms / 32768));
}
