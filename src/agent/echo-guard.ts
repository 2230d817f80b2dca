/**
 * Tells the caller's voice from the echo of the agent's own, so the agent does not interrupt itself.
 *
 * On a phone line the agent's audio can come back on the inbound stream: a speakerphone or a
 * handset without echo cancelling, a 2-wire hybrid, a bad carrier leg. The VAD hears it as speech,
 * and a voice agent that barges in on any speech stops mid-sentence for its own voice (a weakness
 * users report in pipecat, LiveKit Agents and others on telephony). A full echo canceller would need
 * the sample-exact playout clock of the far end, which a Media Stream does not give; this is a
 * double-talk detector instead, on 10 ms energy envelopes:
 *
 *   - the agent's audio is logged as the far end plays it (our model of its playout buffer: each
 *     frame starts when sent or when the previous one ends; `clear` empties it), the caller's audio as
 *     it arrives, both on the same monotonic clock;
 *   - the echo path is the delay (40–800 ms) at which, over the last 2 s and at least 0.5 s of
 *     agent speech, the caller's level (dB) sits a steady loss below the agent's: the difference
 *     varies least there, and within 3 dB of its median (median absolute deviation; 0.5–1 dB measured
 *     for an echo end to end), which another voice does not do;
 *   - a chunk of caller audio is echo when none of its 10 ms bins is louder than the agent's audio
 *     one path-delay earlier (±20 ms, or a louder bin before it decaying like a room's reverberation,
 *     2 dB per 10 ms) minus that loss, plus a 6 dB margin (and than −55 dBFS).
 *     Anything louder is the caller talking over the agent, and goes through.
 *
 * Until a path is found, or the call has had enough agent speech to rule one out at every delay
 * (0.75 s of it at each: 1–2 s in all), the rule of the phone network's echo cancellers applies
 * instead (Geigel's): audio at least 6 dB below the loudest agent audio of 40–800 ms before is taken
 * for echo. When the VAD has not needed a path for a second of agent speech, that second alone
 * decides whether the echo is still there; if not, the path is dropped. Without agent audio in the
 * last 800 ms, or once the line is known to have no echo path, nothing is held back: on a clean
 * line a caller is only ever held back during the agent's first 1–2 s, and only if 6 dB under its
 * recent peak. Pure: times and audio are arguments.
 */

import { decodeG711, type G711Encoding } from '../audio/g711.js';
import { levelDbfs } from '../audio/level.js';

const BIN_MS = 10;
const SAMPLES_PER_BIN = 80;
/** Envelope floor (dBFS): digital silence and µ-law's idle noise both sit at it. */
const FLOOR_DB = -70;
/** Agent bins louder than this count as the agent speaking. */
const ACTIVE_DB = -50;
/** Reverberation allowed for in the echo: 2 dB per 10 ms (60 dB in 300 ms), over up to 250 ms. */
const REVERB_DECAY_DB_PER_BIN = 2;
const REVERB_BINS = 25;
/** Caller audio this quiet is no voice to let through, whatever the echo prediction says. */
const QUIET_DB = -55;
/** An echo's level follows the agent's at a steady loss: this much median deviation at most (dB). */
const MAX_SPREAD_DB = 3;
/** No echo comes back sooner than this: the round trip to the far end and back. */
const MIN_DELAY_MS = 40;
/** A path the VAD has not needed while the agent spoke this long (it never fired on the echo) is checked on that stretch alone. */
const EXPIRE_AFTER_AGENT_BINS = 100;
/** With a path known, it is estimated again every this many re-estimation intervals (1 s)… */
const PATH_RECHECK_INTERVALS = 4;
/** …looking this far either side of it; the whole range every FULL_SEARCH_EVERY estimates. */
const LOCAL_SEARCH_BINS = 5;
const FULL_SEARCH_EVERY = 4;
/** Both rings cover the estimation window plus the VAD's longest backlog (INBOUND_BUFFER_MS ≤ 10 s). */
const BACKLOG_BINS = 1024;
/** Before a path is known, echo is assumed at least this much below the agent (G.168's minimum echo return loss). */
const PRIOR_LOSS_DB = 6;
/** How far either side of the path delay an echo bin may land (envelope smear, frame jitter). */
const SLACK_BINS = 2;

export interface EchoGuardOptions {
  /** Longest echo delay searched: the round trip to the far end plus its playout buffer (default 800 ms). */
  maxDelayMs?: number;
  /** Window over which the envelopes are compared (default 2000 ms). */
  historyMs?: number;
  /** Agent audio the window must hold before a path is trusted (default 500 ms). */
  minAgentMs?: number;
  /** How much louder than the predicted echo caller audio must be to count as the caller (default 6 dB). */
  marginDb?: number;
  /** How often a path is looked for while there is none (default 250 ms; four times that once one is found). */
  reestimateMs?: number;
}

/** The echo path last found: its delay and loss (agent level − echo level). */
export interface EchoPath {
  delayMs: number;
  lossDb: number;
  /** Median absolute deviation of the loss over the window. */
  spreadDb: number;
}

/** What the call session needs of an echo guard (tests substitute their own judgement). */
export interface EchoJudge {
  onAgentG711(bytes: Uint8Array, encoding: G711Encoding, sentAtMs: number): void;
  onClear(atMs: number): void;
  onCallerAudio(pcm: Int16Array, receivedAtMs: number): void;
  isEcho(endSample: number, samples: number): boolean;
  readonly echoPath: EchoPath | undefined;
}

export class EchoGuard implements EchoJudge {
  private readonly minLag = MIN_DELAY_MS / BIN_MS;
  private readonly maxLag: number;
  private readonly historyBins: number;
  private readonly minAgentBins: number;
  private readonly marginDb: number;
  private readonly reestimateBins: number;

  /** Agent envelope by absolute 10 ms bin of the monotonic clock (ring; `agentBin` says which bin a slot holds). */
  private readonly agentDb: Float32Array;
  private readonly agentBin: Float64Array;
  /** Where the far end's playout of what we sent ends (ms). */
  private playEndMs = -Infinity;

  /** Caller envelope by inbound 10 ms block (ring). */
  private readonly callerDb: Float32Array;
  private readonly partial = new Int16Array(SAMPLES_PER_BIN);
  private partialLength = 0;
  private blocks = 0;
  private samples = 0;
  /** Monotonic time of inbound sample 0, from the earliest-arriving frame (network delay varies). */
  private inboundStartMs = Infinity;

  private path: EchoPath | undefined;
  /** Whether a window with enough agent speech was ever judged (until then, see belowRecentAgent). */
  private judged = false;
  private pathEstimatedAtBlock = -Infinity;
  private estimates = 0;
  /** Agent bins with speech logged since the last `isEcho` that reached the path (see EXPIRE_AFTER_AGENT_BINS). */
  private agentBinsSinceQuery = 0;
  private expiryCheckDue = false;
  /** Scratch for estimatePath: the window's levels, copied out of the rings once per estimate. */
  private readonly windowCaller: Float32Array;
  private readonly windowAgent: Float32Array;
  private readonly windowLoss: Float32Array;

  constructor(options: EchoGuardOptions = {}) {
    this.maxLag = Math.round((options.maxDelayMs ?? 800) / BIN_MS);
    this.historyBins = Math.round((options.historyMs ?? 2000) / BIN_MS);
    this.minAgentBins = Math.round((options.minAgentMs ?? 500) / BIN_MS);
    this.marginDb = options.marginDb ?? 6;
    this.reestimateBins = Math.round((options.reestimateMs ?? 250) / BIN_MS);
    const agentSlots = this.historyBins + this.maxLag + 4 * SLACK_BINS + BACKLOG_BINS;
    this.agentDb = new Float32Array(agentSlots).fill(FLOOR_DB);
    this.agentBin = new Float64Array(agentSlots).fill(-1);
    this.callerDb = new Float32Array(this.historyBins + BACKLOG_BINS).fill(FLOOR_DB);
    this.windowCaller = new Float32Array(this.historyBins);
    this.windowAgent = new Float32Array(this.historyBins + this.maxLag);
    this.windowLoss = new Float32Array(this.historyBins);
  }

  /** Agent audio (8 kHz PCM) handed to the transport at `sentAtMs`. */
  onAgentAudio(pcm: Int16Array, sentAtMs: number): void {
    const firstBin = this.agentStartBin(sentAtMs, pcm.length);
    for (let offset = 0, bin = firstBin; offset + SAMPLES_PER_BIN <= pcm.length; offset += SAMPLES_PER_BIN, bin++) {
      this.setAgent(bin, levelDb(pcm, offset, SAMPLES_PER_BIN));
    }
  }

  /**
   * The same, as the G.711 bytes sent: levels from a table of each code's power, no decoding (this
   * runs for every outbound frame of every call).
   */
  onAgentG711(bytes: Uint8Array, encoding: G711Encoding, sentAtMs: number): void {
    const power = G711_POWER[encoding];
    const firstBin = this.agentStartBin(sentAtMs, bytes.length);
    for (let offset = 0, bin = firstBin; offset + SAMPLES_PER_BIN <= bytes.length; offset += SAMPLES_PER_BIN, bin++) {
      let sum = 0;
      for (let i = offset; i < offset + SAMPLES_PER_BIN; i++) sum += power[bytes[i]!]!;
      this.setAgent(bin, powerDb(sum / SAMPLES_PER_BIN));
    }
  }

  /** Where `samples` of agent audio sent at `sentAtMs` start playing at the far end (its bin); advances the playout end. */
  private agentStartBin(sentAtMs: number, samples: number): number {
    const startMs = Math.max(sentAtMs, this.playEndMs);
    this.playEndMs = startMs + (samples / SAMPLES_PER_BIN) * BIN_MS;
    return Math.round(startMs / BIN_MS);
  }

  /** The far end's buffer was cleared at `atMs`: what was sent but not yet played will not echo. */
  onClear(atMs: number): void {
    if (this.playEndMs <= atMs) return;
    for (let bin = Math.ceil(atMs / BIN_MS); bin <= Math.ceil(this.playEndMs / BIN_MS); bin++) this.setAgent(bin, FLOOR_DB);
    this.playEndMs = atMs;
  }

  /** Caller audio (8 kHz PCM) as it arrived, at `receivedAtMs`. */
  onCallerAudio(pcm: Int16Array, receivedAtMs: number): void {
    this.samples += pcm.length;
    this.inboundStartMs = Math.min(this.inboundStartMs, receivedAtMs - (this.samples / SAMPLES_PER_BIN) * BIN_MS);
    let offset = 0;
    if (this.partialLength > 0) {
      while (offset < pcm.length && this.partialLength < SAMPLES_PER_BIN) this.partial[this.partialLength++] = pcm[offset++]!;
      if (this.partialLength < SAMPLES_PER_BIN) return;
      this.pushCallerLevel(levelDb(this.partial, 0, SAMPLES_PER_BIN));
      this.partialLength = 0;
    }
    // Frames are whole blocks (20 ms = 2 × 10 ms) in practice: measured in place, nothing copied.
    for (; offset + SAMPLES_PER_BIN <= pcm.length; offset += SAMPLES_PER_BIN) this.pushCallerLevel(levelDb(pcm, offset, SAMPLES_PER_BIN));
    while (offset < pcm.length) this.partial[this.partialLength++] = pcm[offset++]!;
  }

  private pushCallerLevel(db: number): void {
    this.callerDb[this.blocks % this.callerDb.length] = db;
    this.blocks++;
    if (this.expiryCheckDue) this.checkPathStillThere();
  }

  /**
   * The agent spoke a second without the VAD asking about its echo (see EXPIRE_AFTER_AGENT_BINS):
   * is the echo still there? Judged on that second alone. Gone (the phone's own canceller settled,
   * the caller took the handset): the path is dropped rather than kept through the next reply's
   * first words. Still there, only too faint to sound like speech: it stays. Too little agent
   * speech in that second to tell: it stays.
   */
  private checkPathStillThere(): void {
    this.expiryCheckDue = false;
    this.agentBinsSinceQuery = 0;
    if (this.path === undefined) return;
    const estimate = this.estimatePath(this.blocks - 1, EXPIRE_AFTER_AGENT_BINS);
    if (estimate !== 'too little agent speech') this.path = estimate;
  }

  /**
   * Whether the caller audio ending at inbound sample `endSample` (the last `samples` of it) is the
   * echo of the agent's audio rather than the caller's voice.
   */
  isEcho(endSample: number, samples: number): boolean {
    const lastBlock = Math.min(this.blocks, Math.floor(endSample / SAMPLES_PER_BIN)) - 1;
    const firstBlock = Math.max(0, Math.floor((endSample - samples) / SAMPLES_PER_BIN), this.blocks - this.callerDb.length);
    if (lastBlock < firstBlock) return false;
    // Nothing the agent said could be coming back in these blocks: not echo.
    if (!this.agentActiveIn(this.binOf(firstBlock) - this.maxLag - SLACK_BINS, this.binOf(lastBlock))) return false;
    this.agentBinsSinceQuery = 0;
    this.expiryCheckDue = false;
    const path = this.pathAt(lastBlock);
    if (path === undefined) return this.judged ? false : this.belowRecentAgent(firstBlock, lastBlock);
    const lag = path.delayMs / BIN_MS;
    for (let block = firstBlock; block <= lastBlock; block++) {
      const predicted = this.echoAt(this.binOf(block) - lag) - path.lossDb;
      if (this.caller(block) > Math.max(predicted + this.marginDb, QUIET_DB)) return false;
    }
    return true;
  }

  /**
   * The loudest the echo of the agent's audio around `bin` can be, before the path's loss: the agent's
   * level within ±SLACK_BINS, or an earlier, louder bin decaying as a room's reverberation does
   * (a speakerphone's echo fills the agent's pauses between syllables).
   */
  private echoAt(bin: number): number {
    let level = FLOOR_DB;
    for (let b = bin - SLACK_BINS; b <= bin + SLACK_BINS; b++) level = Math.max(level, this.agent(b));
    for (let k = SLACK_BINS + 1; k <= REVERB_BINS; k++) level = Math.max(level, this.agent(bin - k) - (k - SLACK_BINS) * REVERB_DECAY_DB_PER_BIN);
    return level;
  }

  /**
   * Before the call has had enough agent speech to find (or rule out) an echo path, the rule phone
   * echo cancellers use (Geigel): audio at least PRIOR_LOSS_DB below the loudest agent audio that
   * could be echoing in it is taken for echo. Without it the first echo of the greeting would stop it.
   */
  private belowRecentAgent(firstBlock: number, lastBlock: number): boolean {
    for (let block = firstBlock; block <= lastBlock; block++) {
      const bin = this.binOf(block);
      let agent = FLOOR_DB;
      for (let b = bin - this.maxLag - SLACK_BINS; b <= bin - this.minLag; b++) agent = Math.max(agent, this.agent(b));
      if (this.caller(block) > Math.max(agent - PRIOR_LOSS_DB, QUIET_DB)) return false;
    }
    return true;
  }

  /** The echo path in use, if one was found (for logs and tests). */
  get echoPath(): EchoPath | undefined {
    return this.path;
  }

  private pathAt(lastBlock: number): EchoPath | undefined {
    // A path found is checked again every few intervals (an echo path is steady within a call);
    // while none is, every interval, so one is found soon after the echo starts.
    const interval = this.path === undefined ? this.reestimateBins : PATH_RECHECK_INTERVALS * this.reestimateBins;
    if (lastBlock - this.pathEstimatedAtBlock >= interval || lastBlock < this.pathEstimatedAtBlock) {
      const estimate = this.estimatePath(lastBlock);
      // Too little agent speech in the window (a pause between replies) says nothing new: the path
      // found before still holds. A window with enough of it and no echo in it ends the path.
      if (estimate !== 'too little agent speech') {
        this.path = estimate;
        this.judged = true;
      }
      this.pathEstimatedAtBlock = lastBlock;
    }
    return this.path;
  }

  /**
   * Finds the delay at which the caller's level follows the agent's at a steady loss, as an
   * attenuated copy does and another voice does not: over the bins where the agent spoke at that
   * delay, the difference of the two levels (dB) must vary least at the path's delay, and there
   * stay within MAX_SPREAD_DB of its median (median absolute deviation). The spread, not a
   * correlation, decides: any two voices go loud and quiet together now and then over a second or
   * two, and a room's reverberation smears an echo's syllables, which a correlation of the changes
   * would punish; neither moves the loss of a real echo by much (0.5–1 dB measured end to end).
   */
  private estimatePath(lastBlock: number, windowBins = this.historyBins): EchoPath | undefined | 'too little agent speech' {
    const firstBlock = Math.max(0, lastBlock - windowBins + 1, this.blocks - this.callerDb.length);
    const n = lastBlock - firstBlock + 1;
    if (n < this.minAgentBins) return 'too little agent speech';
    // Copied out of the rings once: the search below reads each value up to 81 times.
    const firstBin = this.binOf(firstBlock);
    for (let i = 0; i < n; i++) this.windowCaller[i] = this.caller(firstBlock + i);
    for (let j = 0; j < n + this.maxLag; j++) this.windowAgent[j] = this.agent(firstBin - this.maxLag + j);
    // Whether the window holds enough agent speech to judge: at the current path's delay if there is
    // one (another delay's window may reach back into older speech), else at any delay. Ruling echo
    // out the first time takes 1.5 times the agent speech that finding a path does, at every delay
    // (see belowRecentAgent): a long delay's window starts later in the agent's speech.
    const currentLag = this.path === undefined ? undefined : this.path.delayMs / BIN_MS;
    const full = currentLag === undefined || this.estimates++ % FULL_SEARCH_EVERY === 0;
    const fromLag = full ? this.minLag : Math.max(this.minLag, currentLag! - LOCAL_SEARCH_BINS);
    const toLag = full ? this.maxLag : Math.min(this.maxLag, currentLag! + LOCAL_SEARCH_BINS);
    let enough = false;
    let fewestAgentBins = Infinity;
    let best: { lag: number; variance: number } | undefined;
    for (let lag = fromLag; lag <= toLag; lag++) {
      let count = 0;
      let sum = 0;
      let sumSquares = 0;
      const offset = this.maxLag - lag;
      for (let i = 0; i < n; i++) {
        const agent = this.windowAgent[offset + i]!;
        if (agent <= ACTIVE_DB) continue;
        const loss = agent - this.windowCaller[i]!;
        count++;
        sum += loss;
        sumSquares += loss * loss;
      }
      fewestAgentBins = Math.min(fewestAgentBins, count);
      if (count < this.minAgentBins) continue;
      if (currentLag === undefined || lag === currentLag) enough = true;
      const variance = sumSquares / count - (sum / count) ** 2;
      if (best === undefined || variance < best.variance) best = { lag, variance };
    }
    if (!enough || best === undefined) return 'too little agent speech';
    let count = 0;
    for (let i = 0; i < n; i++) {
      const agent = this.windowAgent[this.maxLag - best.lag + i]!;
      if (agent > ACTIVE_DB) this.windowLoss[count++] = agent - this.windowCaller[i]!;
    }
    const losses = this.windowLoss.subarray(0, count);
    const loss = medianInPlace(losses);
    for (let i = 0; i < count; i++) losses[i] = Math.abs(losses[i]! - loss);
    const spread = medianInPlace(losses);
    if (spread > MAX_SPREAD_DB) return this.judged || fewestAgentBins >= 1.5 * this.minAgentBins ? undefined : 'too little agent speech';
    return { delayMs: best.lag * BIN_MS, lossDb: loss, spreadDb: spread };
  }

  /** The monotonic-clock bin in which inbound block `block` was spoken. */
  private binOf(block: number): number {
    return Math.round((this.inboundStartMs + block * BIN_MS) / BIN_MS);
  }

  private agentActiveIn(fromBin: number, toBin: number): boolean {
    for (let bin = fromBin; bin <= toBin; bin++) if (this.agent(bin) > ACTIVE_DB) return true;
    return false;
  }

  private setAgent(bin: number, db: number): void {
    if (db > ACTIVE_DB && ++this.agentBinsSinceQuery >= EXPIRE_AFTER_AGENT_BINS) this.expiryCheckDue = true;
    const slot = ((bin % this.agentDb.length) + this.agentDb.length) % this.agentDb.length;
    this.agentDb[slot] = db;
    this.agentBin[slot] = bin;
  }

  private agent(bin: number): number {
    const slot = ((bin % this.agentDb.length) + this.agentDb.length) % this.agentDb.length;
    return this.agentBin[slot] === bin ? this.agentDb[slot]! : FLOOR_DB;
  }

  private caller(block: number): number {
    return this.callerDb[block % this.callerDb.length]!;
  }
}

/** The median of `values`, which it sorts (a typed array's numeric sort: no comparator calls). */
function medianInPlace(values: Float32Array): number {
  values.sort();
  return values[values.length >> 1] ?? 0;
}

/** Level of `count` samples in dBFS, floored at FLOOR_DB. */
function levelDb(pcm: Int16Array, offset: number, count: number): number {
  return Math.max(FLOOR_DB, levelDbfs(pcm, offset, count));
}

/** The same from a mean square (the G.711 path sums powers from a table). */
function powerDb(meanSquare: number): number {
  return Math.max(FLOOR_DB, 10 * Math.log10(meanSquare / (32768 * 32768) + 1e-12));
}

/** Squared linear value of each G.711 code. */
const G711_POWER: Record<G711Encoding, Float64Array> = {
  mulaw: Float64Array.from(decodeG711('mulaw', Uint8Array.from({ length: 256 }, (_, i) => i)), (v) => v * v),
  alaw: Float64Array.from(decodeG711('alaw', Uint8Array.from({ length: 256 }, (_, i) => i)), (v) => v * v),
};
