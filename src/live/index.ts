export { CallMirror, defaultInstanceId, DEFAULT_REDIS_URL } from './call-mirror.js';
export type { CallMirrorOptions, CallMirrorStats, CallMirrorCloseOptions } from './call-mirror.js';
export { OrphanSweeper } from './orphan-sweeper.js';
export type { OrphanSweeperOptions, OrphanSweeperStats, SweepResult } from './orphan-sweeper.js';
export { liveKeys, DEFAULT_KEY_PREFIX } from './keys.js';
export type { LiveKeys } from './keys.js';
export { parseMirroredCall, silentLogger } from './types.js';
export type { LiveCallSnapshot, LiveTurn, LiveSpeaker, LiveDirection, MirroredCall, LiveLogger } from './types.js';
