/**
 * One call: wires the provider transport to the engines and owns the conversation. Audio comes in
 * through `CallEventSink`; the shared VAD and the endpointer turn it into speech events; the pure
 * turn-taking machine decides; this class performs the effects (recognize, reply, pause, resume,
 * interrupt) and keeps the transcript honest: an assistant message holds only what was heard.
 */
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { SAMPLE_RATE_8K, bytesToMs } from '../audio/frames.js';
import { DropOldestAudioBuffer } from '../audio/inbound-buffer.js';
import { PlayoutQueue, type PlayoutMessage } from '../audio/playout-queue.js';
import type { PlayoutScheduler, PlayoutSink } from '../audio/playout-scheduler.js';
import type { Asr, AsrStream, ChatMessage, Engines, LlmEvent, ToolCall, Tts, VadResult, VadStream } from '../engines/types.js';
import type { CallEnding, CallEventSink, CallTransport } from '../telephony/transport.js';
import { AsyncQueue } from '../util/async-queue.js';
import type { AgentProfile } from './agent-profile.js';
import { AgentUtterance, type UtteranceKind } from './agent-utterance.js';
import { Endpointer, HYSTERESIS, type EndpointEvent } from './endpointing.js';
import type { PromptCache } from './prompt-cache.js';
import { SentenceChunker } from './sentence-chunker.js';
import { SpeechEncoder } from './speech-encoder.js';
import { initialTurnState, nextTurn, type TurnEffect, type TurnInput, type TurnState } from './turn-taking.js';
import { BUILT_IN_TOOLS, parseBuiltInToolCall } from './built-in-tools.js';
import { fitToBudget, type ConversationSummarizer } from './context-budget.js';
import { HttpToolRunner, TOOL_FILLER_AFTER_MS, toolSpecs, type ToolResult } from './http-tools.js';
import { Speculation, sameUtterance } from './speculation.js';
import { isBackchannel, isClosingAcknowledgement } from './backchannel.js';
import { EchoGuard, type EchoJudge } from './echo-guard.js';

/**
 * A backchannel word this close to the end of a question is its answer ("…for Tuesday?" — "yes"):
 * the agent stops and answers rather than repeating the question's tail and dropping the "yes".
 */
const ANSWER_WINDOW_MS = 1500;

/** What happens to the call once the closing words have played; `forced`: it happens whatever the caller says. */
interface PendingEnding {
  ending: CallEnding;
  endReason: string;
  forced?: boolean;
}

/**
 * How long a paused reply waits for the final transcript of a possible backchannel. A short
 * utterance's final takes ~20–40 ms on an idle recognizer, but the local one queues streams for a
 * free worker: with 4 calls on 2 workers (turn-latency bench) finals took up to ~1.2 s, and a
 * 350 ms limit turned 5 of 8 "yeah"s into interruptions answered as turns. Waiting costs a real
 * interruption nothing (the agent is silent either way and the caller's speech is still heard);
 * the limit only guards against a final that never comes. Matches Triton's ASR final deadline.
 */
const BACKCHANNEL_JUDGE_TIMEOUT_MS = 1500;
/** Held-back echo chunks further apart than this are logged as separate runs. */
const ECHO_EPISODE_GAP_MS = 2000;

export interface SessionTiming {
  endOfTurnSilenceMs: number;
  minSpeechMs: number;
  bargeInMinSpeechMs: number;
  /** Caller speech this long while the agent speaks interrupts it whatever it is; 0: any barge-in interrupts (see turn-taking.ts). */
  backchannelMaxMs: number;
  vadThreshold: number;
  /** Hold back caller audio that is only the echo of the agent's own voice (echo-guard.ts); default on. */
  echoGuard?: boolean;
  outboundFrameMs: number;
  outboundLeadMs: number;
  maxCallSeconds: number;
}

export interface CallSessionDeps {
  callId: string;
  transport: CallTransport;
  engines: Engines;
  profile: AgentProfile;
  timing: SessionTiming;
  scheduler: PlayoutScheduler;
  prompts: PromptCache;
  logger: Logger;
  /** Local engines this call moves to when a Triton stage fails (apology, then the script answers). */
  degraded?: { asr: Asr; tts: Tts };
  /** Start on the degraded engines (Triton is down as the call arrives). */
  startDegraded?: boolean;
  /** Start the LLM on a stable partial transcript before the end of turn is confirmed. */
  speculativeLlm?: boolean;
  /** Tells the agent's echo from the caller's voice (default: an `EchoGuard`; tests give their own). */
  echoGuard?: EchoJudge;
  /** Token budget of the conversation sent to the LLM (default 6000). */
  contextBudgetTokens?: number;
  /** Summarizes older turns off the hot path; without one, an extractive summary is used. */
  summarizer?: ConversationSummarizer;
}

/** Per-turn latency waterfall, monotonic ms; kept with the call for post-call use. */
export interface TurnRecord {
  index: number;
  userText: string;
  assistantText: string;
  interrupted: boolean;
  speechEndAt?: number;
  turnDecidedAt?: number;
  asrFinalAt?: number;
  /** The LLM request went out (before the turn was decided when speculative). */
  llmRequestAt?: number;
  llmFirstTokenAt?: number;
  firstSegmentToTtsAt?: number;
  ttsFirstAudioAt?: number;
  firstFrameSentAt?: number;
  firstPartialAt?: number;
  /** The reply was generated speculatively, on a partial transcript, and adopted. */
  speculative?: boolean;
}

export type SessionEvent =
  | { type: 'speech_onset'; atMs: number }
  /** Caller audio the VAD took for speech was the agent's own echo, and was held back (first chunk of a run). */
  | { type: 'echo_held'; atMs: number }
  | { type: 'clear_sent'; atMs: number; reason: 'pause' | 'interrupt' }
  | { type: 'interrupted'; atMs: number; heardText: string }
  /** A possible backchannel was judged: the words (if the final came in time) and the verdict. */
  | { type: 'backchannel_judged'; atMs: number; backchannel: boolean; text?: string; reason?: string }
  | { type: 'turn_decided'; atMs: number }
  | { type: 'first_frame'; atMs: number; utteranceId: number }
  /** An utterance played to its end: its text is now in the conversation (and the turn record). */
  | { type: 'utterance_done'; atMs: number; utteranceId: number }
  | { type: 'dtmf'; digit: string }
  | { type: 'degraded'; stage: string; reason: string }
  | { type: 'speculation'; outcome: 'started' | 'adopted' | 'cancelled'; text: string }
  | { type: 'tool_result'; name: string; ok: boolean; ms: number }
  | { type: 'ended'; reason: string };

/** Longest wait for the goodbye line to play out before a max-duration hang-up. */
const GOODBYE_GRACE_MS = 8000;

/** Caller audio kept before speech onset, so the recognizer hears the first syllable. */
const PRE_ROLL_MS = 400;
/**
 * How much further back the pre-roll may reach over echo-held chunks just before a turn's onset: a
 * soft first syllable. No more: on an echoing line the held run before a barge-in is mostly the
 * agent's own echo, which the recognizer must not hear as the caller's words.
 */
const MAX_HELD_PRE_ROLL_MS = 160;
/** The pre-roll buffer: the default pre-roll and its extension; `continue_user_turn` may take all of it. */
const PRE_ROLL_BUFFER_MS = 1200;
/** Speech chunks that passed the echo guard, in a run, after which the run is the caller's (see onVad). */
const ESTABLISHED_RUN_CHUNKS = 2;

/** Tool rounds per reply: a model that keeps calling tools is stopped here and what it said stands. */
const MAX_TOOL_ROUNDS = 3;

export class CallSession implements CallEventSink {
  readonly callId: string;
  readonly startedAt = new Date();
  readonly conversation: ChatMessage[] = [];
  readonly turns: TurnRecord[] = [];
  readonly dtmfDigits: string[] = [];
  state: TurnState = initialTurnState;
  endReason: string | undefined;

  private readonly transport: CallTransport;
  /** Mutable: a failed Triton stage moves the call onto the degraded engines. */
  private engines: Engines;
  private readonly degradedEngines: { asr: Asr; tts: Tts } | undefined;
  private degradedReason: string | undefined;
  /** The caller's words of an utterance the recognizer lost: apologize instead of going silent. */
  private apologyDue = false;
  private readonly tools: HttpToolRunner;
  private readonly llmTools: ReturnType<typeof toolSpecs>;
  private readonly speculativeLlm: boolean;
  private speculation: Speculation | undefined;
  private latestPartial = '';
  /** The partial this turn last speculated on: a stale partial is not worth a second request. */
  private speculatedText = '';
  private hasCarriedText = false;
  private readonly contextBudgetTokens: number;
  private readonly summarizer: ConversationSummarizer | undefined;
  private summary: { text: string; coversUpTo: number } | undefined;
  private summarizing: AbortController | undefined;
  private readonly profile: AgentProfile;
  private readonly timing: SessionTiming;
  private readonly logger: Logger;
  private readonly scheduler: PlayoutScheduler;
  private readonly prompts: PromptCache;
  private readonly queue: PlayoutQueue;
  private readonly sink: PlayoutSink;
  private readonly vad: VadStream;
  private readonly echoGuard: EchoJudge | undefined;
  /** Chunks held back as echo, and when the last one was (see onEchoHeld). */
  private echoChunksHeld = 0;
  private lastEchoHeldAt = -Infinity;
  /** Speech chunks of the endpointer's current run that the echo guard let through. */
  private unheldInRun = 0;
  /** Echo-held audio since the last silence (see onVad). */
  private heldBeforeOnsetMs = 0;
  private readonly endpointer: Endpointer;
  /** The latest caller audio, for a turn's recognition to start before its confirmed onset (a ring: no reference to the frames is kept). */
  private readonly preRoll = new DropOldestAudioBuffer((PRE_ROLL_BUFFER_MS * SAMPLE_RATE_8K) / 1000);
  private asr: AsrStream | undefined;
  /** Ended utterances still waiting for their final: cancelled if the call ends first. */
  private readonly finishingAsr = new Set<AsrStream>();
  private asrFinal: Promise<string> | undefined;
  /** The open turn's recognition was already ended to judge a tentative barge-in. */
  private asrEnded = false;
  /** Recognitions that failed (their final is ''): a barge-in judged on one is an interruption. */
  private readonly failedAsr = new WeakSet<AsrStream>();
  /** Caller audio received so far, in samples, and where the latest judged barge-in paused. */
  private receivedSamples = 0;
  private judgedAtSample = 0;
  /** Caller words of turns whose reply was dropped because the caller went on (joined to the next turn). */
  private carriedText: Promise<string> = Promise.resolve('');
  /** The latest ended caller turn's words, and its number: a newer turn supersedes older results. */
  private lastTurnText: Promise<string> | undefined;
  private userTurnSeq = 0;
  private current: AgentUtterance | undefined;
  private readonly utterances = new Map<number, AgentUtterance>();
  private nextUtteranceId = 1;
  private readonly flushedMarks = new Map<string, number>();
  /** What happens to the call once the current reply has played, and the reason the session records. */
  private pendingEnding: PendingEnding | undefined;
  /**
   * The closing line ended while the caller was speaking over it: the ending waits for their words
   * (a goodbye back ends the call; anything else is answered and the call goes on).
   */
  private endingAwaitsWords: PendingEnding | undefined;
  private turn: TurnRecord | undefined;
  private readonly listeners = new Set<(event: SessionEvent) => void>();
  private readonly maxDurationTimer: NodeJS.Timeout;
  private ended = false;
  private endedResolve!: () => void;
  readonly endedPromise = new Promise<void>((resolve) => (this.endedResolve = resolve));

  constructor(deps: CallSessionDeps) {
    this.callId = deps.callId;
    this.transport = deps.transport;
    this.engines = deps.engines;
    this.degradedEngines = deps.degraded;
    this.tools = new HttpToolRunner(deps.profile.tools, deps.logger);
    this.llmTools = [...BUILT_IN_TOOLS, ...toolSpecs(deps.profile.tools)];
    this.speculativeLlm = deps.speculativeLlm ?? false;
    this.contextBudgetTokens = deps.contextBudgetTokens ?? 6000;
    this.summarizer = deps.summarizer;
    this.profile = deps.profile;
    this.timing = deps.timing;
    this.logger = deps.logger;
    this.scheduler = deps.scheduler;
    this.prompts = deps.prompts;
    this.queue = new PlayoutQueue({ frameMs: deps.timing.outboundFrameMs, leadMs: deps.timing.outboundLeadMs });
    this.sink = { queue: this.queue, deliver: (message) => this.deliver(message) };
    this.vad = deps.engines.vad.createStream((result) => this.onVad(result));
    this.echoGuard = deps.timing.echoGuard === false ? undefined : (deps.echoGuard ?? new EchoGuard());
    this.endpointer = new Endpointer({
      threshold: deps.timing.vadThreshold,
      minSpeechMs: deps.timing.minSpeechMs,
      endOfTurnSilenceMs: deps.timing.endOfTurnSilenceMs,
      gapMs: 96,
    });
    this.conversation.push({ role: 'system', content: deps.profile.systemPrompt });
    this.maxDurationTimer = setTimeout(() => this.onMaxDuration(), deps.timing.maxCallSeconds * 1000);
    this.maxDurationTimer.unref();
    if (deps.startDegraded === true) this.degrade('start', 'Triton not ready when the call arrived');
  }

  /** Why the call runs on the degraded engines, if it does. */
  get degradation(): string | undefined {
    return this.degradedReason;
  }

  /**
   * A stage failed (Triton lost, a deadline missed): the rest of the call runs on the local engines
   * and the scripted agent. Returns false when the call was already degraded.
   */
  private degrade(stage: string, reason: string): boolean {
    if (this.degradedReason !== undefined || this.ended) return false;
    this.degradedReason = `${stage}: ${reason}`;
    this.engines = {
      ...this.engines,
      ...(this.degradedEngines ?? {}),
      llm: this.engines.fallbackLlm,
    };
    this.speculation?.cancel();
    this.speculation = undefined;
    this.logger.warn({ event: 'call_degraded', stage, reason }, 'stage failed: the scripted agent takes over this call');
    this.emit({ type: 'degraded', stage, reason });
    return true;
  }

  /** The voice for TTS; the degraded (local) TTS speaks its own default voice. */
  private get voice(): string | undefined {
    return this.degradedReason === undefined ? this.profile.voice : undefined;
  }

  onEvent(listener: (event: SessionEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get isEnded(): boolean {
    return this.ended;
  }

  /** The stream is up: greet the caller from the prompt cache. */
  start(): void {
    this.logger.info({ event: 'call_started', provider: this.transport.provider }, 'call started');
    this.speakFixed(this.profile.greeting, 'greeting');
  }

  // ── inbound (CallEventSink) ────────────────────────────────────────────────────────────────────
  onAudio(pcm8k: Int16Array): void {
    if (this.ended) return;
    this.echoGuard?.onCallerAudio(pcm8k, performance.now());
    this.vad.push(pcm8k);
    if (this.asr !== undefined) this.asr.push(pcm8k);
    this.preRoll.push(pcm8k);
    this.receivedSamples += pcm8k.length;
  }

  onDtmf(digit: string): void {
    if (this.ended) return;
    this.dtmfDigits.push(digit);
    this.logger.info({ event: 'dtmf', digit }, 'caller pressed a key');
    this.emit({ type: 'dtmf', digit });
  }

  onMarkEcho(name: string): void {
    if (this.ended) return;
    const flushed = this.flushedMarks.get(name);
    if (flushed !== undefined) {
      // The echo `clear` provoked, not playback: the re-sent copy's echo is the real one.
      if (flushed <= 1) this.flushedMarks.delete(name);
      else this.flushedMarks.set(name, flushed - 1);
      return;
    }
    const parsed = AgentUtterance.parseMark(name);
    if (parsed === undefined) {
      this.logger.warn({ event: 'unknown_mark', name }, 'mark echo we never sent');
      return;
    }
    const utterance = this.utterances.get(parsed.utteranceId);
    if (utterance === undefined) return;
    if (utterance.onMarkEcho(parsed.which, performance.now())) this.onUtteranceDone(utterance);
  }

  onStreamEnd(reason: string): void {
    this.end(reason);
  }

  // ── speech detection → turn-taking ────────────────────────────────────────────────────────────
  private onVad(result: VadResult): void {
    if (this.ended) return;
    const chunkMs = (this.engines.vad.chunkSamples / SAMPLE_RATE_8K) * 1000;
    let probability = result.probability;
    const speechLike = probability >= this.timing.vadThreshold - HYSTERESIS;
    if (!this.endpointer.speaking) this.unheldInRun = 0;
    // Only chunks the endpointer could take for speech are checked (most chunks are silence), and
    // not once a run of speech has passed the guard: turning the rest of a caller's run into
    // silence would split it (a lost onset resumes the agent over the caller, a gap judges a
    // backchannel too early).
    if (this.echoGuard !== undefined && speechLike && this.unheldInRun < ESTABLISHED_RUN_CHUNKS) {
      if (this.echoGuard.isEcho(result.endSample, this.engines.vad.chunkSamples)) {
        probability = 0;
        // Passing chunks must come in a row to make the run the caller's: two stray misses of a
        // long echo would otherwise let the rest of it through.
        this.unheldInRun = 0;
        this.onEchoHeld(chunkMs);
      } else {
        this.unheldInRun++;
      }
    }
    // Held echo right before speech that got through may have been the caller's first syllables:
    // the turn's pre-roll reaches back over it (openUserTurn). Silence in between ends that.
    if (!speechLike) this.heldBeforeOnsetMs = 0;
    for (const event of this.endpointer.push(probability, chunkMs)) this.onEndpoint(event);
  }

  /** Logs the first chunk of each run of held-back echo (one line, not one per chunk). */
  private onEchoHeld(chunkMs: number): void {
    const now = performance.now();
    this.echoChunksHeld++;
    this.heldBeforeOnsetMs += chunkMs;
    if (now - this.lastEchoHeldAt > ECHO_EPISODE_GAP_MS) {
      this.logger.info({ event: 'echo_held', path: this.echoGuard?.echoPath }, "the agent's own voice came back on the line: not taken for the caller's");
      this.emit({ type: 'echo_held', atMs: now });
    }
    this.lastEchoHeldAt = now;
  }

  private onEndpoint(event: EndpointEvent): void {
    if (event.type === 'speech_onset') this.emit({ type: 'speech_onset', atMs: performance.now() });
    if (event.type === 'silence_gap') {
      // After a pause the agent may speak again (a cough or a "yeah" resumes it) before the run
      // ends: its echo must meet the guard again.
      this.unheldInRun = 0;
      this.maybeSpeculate();
    }
    // The caller went on after the pause: what was guessed from the partial is stale.
    if (event.type === 'speech_progress' && this.speculation !== undefined) this.cancelSpeculation('caller went on');
    if (event.type === 'turn_end' && this.turn === undefined) this.turn = this.newTurnRecord();
    if (event.type === 'turn_end' && this.turn !== undefined) {
      this.turn.speechEndAt = performance.now() - (event.atMs - event.speechEndMs);
    }
    this.dispatch(event);
  }

  private dispatch(input: TurnInput): void {
    const before = this.state.phase;
    const { state, effects } = nextTurn(this.state, input, this.timing);
    this.state = state;
    if (state.phase !== before) this.logger.debug({ event: 'turn_state', from: before, to: state.phase, input: input.type }, 'turn state');
    for (const effect of effects) this.perform(effect);
    // The agent finished while its output was held for a caller's onset (its last words had
    // played): the hold ends with it, or the next reply would be queued behind it and never sent.
    if (this.queue.isPaused && !this.state.outputPaused && !this.ended) {
      this.queue.resume();
      this.scheduler.wake(this.sink);
    }
  }

  private perform(effect: TurnEffect): void {
    switch (effect) {
      case 'open_user_turn':
        return this.openUserTurn();
      case 'end_user_turn':
        return this.endUserTurn();
      case 'cancel_pending_reply':
        return this.cancelPendingReply();
      case 'pause_output':
        return this.pauseOutput();
      case 'resume_output':
        return this.resumeOutput();
      case 'interrupt_reply':
        return this.interruptReply();
      case 'judge_backchannel':
        return this.judgeBackchannel();
      case 'continue_user_turn':
        return this.continueUserTurn();
      case 'drop_user_turn':
        return this.dropUserTurn();
      default: {
        const unhandled: never = effect;
        throw new Error(`unhandled effect ${String(unhandled)}`);
      }
    }
  }

  /**
   * Starts recognizing a caller turn, fed the pre-roll first (the speech onset came before the
   * turn was confirmed). `preRollSamples` limits how much of it; `turn` continues a turn record.
   */
  private openUserTurn(options: { preRollSamples?: number; turn?: TurnRecord } = {}): void {
    this.asr?.cancel();
    this.cancelSpeculation('new caller turn');
    this.turn = options.turn ?? this.newTurnRecord();
    let resolveFinal!: (text: string) => void;
    this.asrFinal = new Promise<string>((resolve) => (resolveFinal = resolve));
    this.latestPartial = '';
    this.speculatedText = '';
    this.asrEnded = false;
    const turn = this.turn;
    const stream = this.engines.asr.createStream(this.callId, (event) => {
      if (event.type === 'final') resolveFinal(event.text);
      else if (event.type === 'partial') {
        if (this.asr !== stream) return;
        this.latestPartial = event.text;
        turn.firstPartialAt ??= performance.now();
        // A newer partial during the pause: re-aim the speculation at it.
        if (this.speculation !== undefined && !sameUtterance(this.speculation.userText, event.text)) this.maybeSpeculate();
      } else if (event.type === 'error') {
        this.logger.warn({ event: 'asr_error', err: event.error.message }, 'recognizer failed on this utterance');
        this.failedAsr.add(stream);
        if (this.degrade('asr', event.error.message)) this.apologyDue = true;
        resolveFinal('');
      }
    });
    const heldMs = Math.min(this.heldBeforeOnsetMs, MAX_HELD_PRE_ROLL_MS);
    this.heldBeforeOnsetMs = 0;
    const preRoll = options.preRollSamples ?? ((PRE_ROLL_MS + heldMs) * SAMPLE_RATE_8K) / 1000;
    const audio = this.preRoll.latest(preRoll);
    if (audio.length > 0) stream.push(audio);
    this.asr = stream;
  }

  private endUserTurn(): void {
    const stream = this.asr;
    const final = this.asrFinal;
    const turn = this.turn ?? this.newTurnRecord();
    this.turn = undefined;
    this.asr = undefined;
    this.asrFinal = undefined;
    turn.turnDecidedAt = performance.now();
    this.emit({ type: 'turn_decided', atMs: turn.turnDecidedAt });
    if (stream === undefined || final === undefined) {
      this.dispatch({ type: 'agent_done' });
      return;
    }
    if (!this.asrEnded) stream.end();
    this.asrEnded = false;
    this.awaitFinal(stream, final);
    const seq = ++this.userTurnSeq;
    const text = Promise.all([this.carriedText, final]).then(([carried, own]) => {
      turn.asrFinalAt = performance.now();
      return [carried, own.trim()].filter(Boolean).join(' ');
    });
    this.carriedText = Promise.resolve('');
    this.hasCarriedText = false;
    this.lastTurnText = text;
    void text.then((userText) => {
      // A newer turn superseded this one (the caller went on): its words travel with that turn.
      if (seq === this.userTurnSeq && this.state.phase === 'thinking') this.onUserText(turn, userText, this.failedAsr.has(stream));
    });
  }

  /** `recognitionFailed`: the turn's own recognizer failed (its '' is words lost, not silence). */
  private onUserText(turn: TurnRecord, userText: string, recognitionFailed: boolean): void {
    if (this.ended) return;
    const closing = this.endingAwaitsWords;
    if (closing !== undefined) {
      this.endingAwaitsWords = undefined;
      // A goodbye back (or nothing recognizable, unless the recognizer failed) ends the call as the
      // agent meant to; anything else is answered, and the agent may end the call again afterwards.
      if (userText === '' ? !recognitionFailed : isClosingAcknowledgement(userText)) {
        if (userText !== '') this.recordUserTurn(turn, userText);
        this.logger.info({ event: 'call_ending', ending: closing.ending, ...(userText === '' ? {} : { text: userText }) }, 'agent ends the call');
        this.transport.finish(closing.ending);
        this.end(closing.endReason);
        return;
      }
      this.logger.info({ event: 'call_ending_cancelled', ending: closing.ending }, 'caller went on after the closing words; the call goes on');
    }
    if (userText === '') {
      this.cancelSpeculation('empty turn');
      if (this.apologyDue) {
        // The recognizer failed on what the caller said: say so rather than stay silent.
        this.apologyDue = false;
        this.speakFixed(this.profile.apology, 'prompt');
        return;
      }
      this.logger.info({ event: 'empty_turn' }, 'caller turn had no recognizable words');
      this.dispatch({ type: 'agent_done' });
      return;
    }
    // Words were heard after all: an apology held for a failed part of this turn is moot.
    this.apologyDue = false;
    this.recordUserTurn(turn, userText);
    this.startReply(turn);
  }

  private recordUserTurn(turn: TurnRecord, userText: string): void {
    turn.userText = userText;
    turn.index = this.turns.length;
    this.turns.push(turn);
    this.conversation.push({ role: 'user', content: userText });
    this.logger.info({ event: 'user_turn', turn: turn.index, text: userText }, 'caller said');
  }

  private cancelPendingReply(): void {
    // The caller's words so far (recognized or not yet) join the turn now starting.
    if (this.lastTurnText !== undefined) {
      this.carriedText = this.lastTurnText;
      this.hasCarriedText = true;
    }
    this.lastTurnText = undefined;
    this.userTurnSeq++;
    const utterance = this.current;
    if (utterance === undefined || utterance.kind !== 'reply' || !utterance.isActive) return;
    utterance.cancel();
    this.utterances.delete(utterance.id);
    this.queue.clear();
    if (utterance.toolMessages.length > 0) {
      // A tool already ran for these words (its effects happened): the turn stays as it was, with
      // the calls and results, so the model does not call it again; the caller's next words stand alone.
      this.conversation.push(...utterance.toolMessages);
      this.carriedText = Promise.resolve('');
      this.hasCarriedText = false;
    } else if (this.conversation.at(-1)?.role === 'user') {
      // Take the caller's words back out of the conversation: they continue in the next turn.
      this.conversation.pop();
      this.turns.pop();
    }
    this.logger.info({ event: 'reply_cancelled', utterance: utterance.id }, 'caller went on; reply dropped unheard');
    this.current = undefined;
  }

  private pauseOutput(): void {
    const now = performance.now();
    const { flushedMarks, rewoundMs } = this.queue.pause(now);
    for (const name of flushedMarks) this.flushedMarks.set(name, (this.flushedMarks.get(name) ?? 0) + 1);
    this.current?.notePaused(now);
    this.transport.clear();
    this.echoGuard?.onClear(now);
    this.emit({ type: 'clear_sent', atMs: now, reason: 'pause' });
    this.logger.debug({ event: 'output_paused', rewoundMs }, 'caller speech onset: output paused');
  }

  private resumeOutput(): void {
    this.queue.resume();
    this.current?.noteResumed();
    this.scheduler.wake(this.sink);
    this.logger.debug({ event: 'output_resumed' }, 'speech too short to interrupt: output resumed');
  }

  /**
   * A tentative barge-in ended before it was known to be more than a backchannel: its final
   * transcript decides whether the reply resumes (only acknowledgement, and the agent has more to
   * say) or is interrupted and the caller answered.
   */
  private judgeBackchannel(): void {
    const stream = this.asr;
    const final = this.asrFinal;
    if (stream === undefined || final === undefined) {
      this.dispatch({ type: 'backchannel_verdict', backchannel: false });
      return;
    }
    stream.end();
    this.asrEnded = true;
    this.judgedAtSample = this.receivedSamples;
    // Words of this barge-in judged before (the caller went on after an acknowledgement) count too.
    const words = Promise.all([this.carriedText, final]).then(([carried, own]) => [carried, own.trim()].filter(Boolean).join(' '));
    let decided = false;
    const decide = (backchannel: boolean, fields: { text?: string; reason?: string }): void => {
      if (decided) return;
      decided = true;
      clearTimeout(timer);
      const judging = this.state.bargeIn === 'judging' || this.state.bargeIn === 'judging_turn_over';
      if (this.ended || this.asr !== stream || !judging) return;
      this.logger.info(
        { event: backchannel ? 'backchannel' : 'barge_in_confirmed', ...fields },
        backchannel ? 'caller acknowledged; the agent goes on' : 'caller interrupted the agent',
      );
      this.emit({ type: 'backchannel_judged', atMs: performance.now(), backchannel, ...fields });
      this.dispatch({ type: 'backchannel_verdict', backchannel });
    };
    const timer = setTimeout(() => decide(false, { reason: `final transcript not in within ${BACKCHANNEL_JUDGE_TIMEOUT_MS} ms` }), BACKCHANNEL_JUDGE_TIMEOUT_MS);
    timer.unref();
    void words.then((text) => {
      // The words may be missing, not absent: do not resume over what nobody heard.
      if (this.failedAsr.has(stream)) return decide(false, { text, reason: 'the recognizer failed' });
      // Over the closing line, a goodbye back is acknowledgement too: the line plays out and the call ends.
      const acknowledgement = this.pendingEnding !== undefined ? isClosingAcknowledgement(text) : isBackchannel(text);
      const answering = acknowledgement && this.isAnsweringQuestion();
      decide(acknowledgement && !answering, answering ? { text, reason: 'answers the question' } : { text });
    });
  }

  /**
   * The judged words interrupted, and the caller's turn goes on: those words start the turn's text,
   * and what the caller says from the pause on (the audio since the judgement) is recognized afresh
   * and joined to them when the turn ends.
   */
  private continueUserTurn(): void {
    const judged = this.asrFinal ?? Promise.resolve('');
    // Its final may still be on its way (the caller talked on, or the judging timed out): the
    // stream is left to finish, not cancelled with the turn's next recognition.
    const judgedStream = this.asr;
    if (judgedStream !== undefined) {
      this.asr = undefined;
      this.awaitFinal(judgedStream, judged);
    }
    const before = this.carriedText;
    this.carriedText = Promise.all([before, judged]).then(([carried, own]) => [carried, own.trim()].filter(Boolean).join(' '));
    this.hasCarriedText = true;
    this.openUserTurn({ preRollSamples: this.receivedSamples - this.judgedAtSample, ...(this.turn === undefined ? {} : { turn: this.turn }) });
  }

  /** An ended recognition whose final is still to come: left to finish, cancelled only if the call ends first. */
  private awaitFinal(stream: AsrStream, final: Promise<string>): void {
    this.finishingAsr.add(stream);
    void final.finally(() => this.finishingAsr.delete(stream));
  }

  /** The agent is finishing a question: a "yes" now answers it. */
  private isAnsweringQuestion(): boolean {
    const utterance = this.current;
    if (utterance === undefined || !utterance.fullyQueued) return false;
    const text = utterance.segments.map((segment) => segment.text).join(' ');
    return /\?["')\s]*$/.test(text) && this.queue.pendingAudioMs() < ANSWER_WINDOW_MS;
  }

  /** The caller's tentative turn was a backchannel or a blip: nothing to answer. */
  private dropUserTurn(): void {
    const stream = this.asr;
    this.asr = undefined;
    this.asrFinal = undefined;
    this.asrEnded = false;
    this.turn = undefined;
    this.carriedText = Promise.resolve('');
    this.hasCarriedText = false;
    this.latestPartial = '';
    this.cancelSpeculation('backchannel');
    stream?.cancel();
  }

  private interruptReply(): void {
    const now = performance.now();
    const utterance = this.stopOutput(now);
    this.emit({ type: 'clear_sent', atMs: now, reason: 'interrupt' });
    if (utterance !== undefined) {
      this.emit({ type: 'interrupted', atMs: now, heardText: utterance.heardText() });
      this.logger.info({ event: 'barge_in', utterance: utterance.id, heard: utterance.heardText() }, 'caller interrupted the agent');
    }
    this.pendingEnding = undefined;
    this.dispatch({ type: 'interrupt_handled' });
  }

  /** Drops all unplayed audio here and at the far end and cuts the current utterance where it was heard. */
  private stopOutput(now: number): AgentUtterance | undefined {
    const utterance = this.current;
    this.queue.clear();
    this.transport.clear();
    this.echoGuard?.onClear(now);
    if (utterance === undefined) return undefined;
    utterance.interrupt(now);
    this.finishUtterance(utterance);
    this.current = undefined;
    return utterance;
  }

  // ── agent output ──────────────────────────────────────────────────────────────────────────────
  private newUtterance(kind: UtteranceKind): AgentUtterance {
    const utterance = new AgentUtterance(this.nextUtteranceId++, kind);
    this.utterances.set(utterance.id, utterance);
    this.current = utterance;
    return utterance;
  }

  /** A fixed line, from the prompt cache when it is there (synthesized on the fly if not). */
  private speakFixed(text: string, kind: UtteranceKind): AgentUtterance {
    const utterance = this.newUtterance(kind);
    const cached = this.prompts.get(text, this.transport.encoding, this.profile.voice);
    const enqueue = (frames: Uint8Array): void => {
      if (!utterance.isActive || this.ended) return;
      this.queue.enqueueMark(utterance.markName('start'));
      this.enqueueAudio(utterance, frames);
      utterance.addSegment(0, text, bytesToMs(frames.length));
      this.queue.enqueueMark(utterance.markName(0));
      this.queue.enqueueMark(utterance.markName('end'));
      utterance.markAllQueued();
      this.scheduler.wake(this.sink);
    };
    if (cached !== undefined) enqueue(cached);
    else {
      void this.prompts.synthesize(text, this.transport.encoding, this.profile.voice).then(enqueue, (error: Error) => {
        this.logger.error({ event: 'tts_error', err: error.message }, 'could not synthesize a fixed prompt');
        this.finishUtterance(utterance);
      });
    }
    return utterance;
  }

  private enqueueAudio(utterance: AgentUtterance, frames: Uint8Array): void {
    if (frames.length === 0) return;
    if (utterance.status === 'preparing') {
      utterance.status = 'speaking';
      this.dispatch({ type: 'agent_audio_started' });
    }
    this.queue.enqueueAudio(frames);
    this.scheduler.wake(this.sink);
  }

  private startReply(turn: TurnRecord): void {
    const utterance = this.newUtterance('reply');
    void this.runReply(utterance, turn).catch((error: Error) => {
      if (utterance.signal.aborted || this.ended) return;
      this.logger.error({ event: 'reply_failed', err: error.message }, 'reply pipeline failed; apologizing');
      this.finishUtterance(utterance);
      if (this.current === utterance) this.current = undefined;
      this.degrade('reply', error.message);
      this.speakFixed(this.profile.apology, 'prompt');
    });
  }

  private async runReply(utterance: AgentUtterance, turn: TurnRecord): Promise<void> {
    const signal = utterance.signal;
    const segments = new AsyncQueue<string>();
    const llmDone = this.generateReply(utterance, turn, segments)
      .catch((error: Error) => segments.fail(error))
      // Whatever happened (an abort mid-tool included), the TTS side must not wait for more text.
      .finally(() => segments.end());

    const encoder = new SpeechEncoder(this.transport.encoding);
    let segmentMs = 0;
    try {
      this.queue.enqueueMark(utterance.markName('start'));
      const voice = this.voice;
      const audio = this.engines.tts.synthesize({ callId: this.callId, text: segments, signal, ...(voice ? { voice } : {}) });
      for await (const chunk of audio) {
        if (signal.aborted || this.ended) return;
        if (chunk.pcm.length > 0) turn.ttsFirstAudioAt ??= performance.now();
        const frames = encoder.encode(chunk.pcm, chunk.sampleRate);
        segmentMs += bytesToMs(frames.length);
        this.enqueueAudio(utterance, frames);
        if (chunk.segmentEnd) {
          const tail = encoder.flush();
          segmentMs += bytesToMs(tail.length);
          this.enqueueAudio(utterance, tail);
          utterance.addSegment(chunk.segment, chunk.text, segmentMs);
          segmentMs = 0;
          this.queue.enqueueMark(utterance.markName(chunk.segment));
          this.scheduler.wake(this.sink);
        }
      }
      await llmDone;
    } finally {
      encoder.destroy();
    }
    if (signal.aborted || this.ended) return;
    this.takeToolCalls(utterance);
    this.queue.enqueueMark(utterance.markName('end'));
    utterance.markAllQueued();
    this.scheduler.wake(this.sink);
  }

  /**
   * The LLM side of a reply: text → speakable segments as it streams; built-in tool calls are kept
   * for after playback; HTTP tool calls run (a filler line if they take a while), their results go
   * back into the context and generation continues.
   */
  private async generateReply(utterance: AgentUtterance, turn: TurnRecord, segments: AsyncQueue<string>): Promise<void> {
    const signal = utterance.signal;
    const chunker = new SentenceChunker();
    const pushSegment = (segment: string): void => {
      turn.firstSegmentToTtsAt ??= performance.now();
      segments.push(segment);
    };
    const onFallback = (info: { phase: string; reason: string }): void => {
      // The configured LLM failed: apologize (before the script's answer, or after the cut-off text).
      if (!this.degrade('llm', info.reason)) return;
      // Mid-reply: the words generated so far are spoken first, then the apology.
      for (const segment of chunker.flush()) pushSegment(segment);
      pushSegment(this.profile.apology);
    };
    const messages = this.contextMessages();
    let events: AsyncIterable<LlmEvent> | undefined = this.adoptSpeculation(turn, signal);
    for (let round = 0; ; round++) {
      if (events === undefined) {
        turn.llmRequestAt ??= performance.now();
        events = this.engines.llm.generate({ callId: this.callId, messages, tools: this.llmTools, signal, onFallback });
      }
      const httpCalls: ToolCall[] = [];
      let roundText = '';
      for await (const event of events) {
        if (signal.aborted) break;
        if (event.type === 'text') {
          turn.llmFirstTokenAt ??= performance.now();
          utterance.generatedText += event.delta;
          roundText += event.delta;
          for (const segment of chunker.push(event.delta)) pushSegment(segment);
        } else if (event.type === 'tool_call') {
          if (this.tools.has(event.call.name)) httpCalls.push(event.call);
          else utterance.toolCalls.push(event.call);
        }
      }
      events = undefined;
      if (signal.aborted || httpCalls.length === 0) break;
      if (round === MAX_TOOL_ROUNDS) {
        this.logger.warn({ event: 'tool_rounds_exceeded', rounds: round }, 'LLM kept calling tools; reply ends here');
        break;
      }
      // What the model said before calling the tool is spoken while the tool runs.
      for (const segment of chunker.flush()) pushSegment(segment);
      const results = await this.runHttpTools(httpCalls, signal, pushSegment);
      if (signal.aborted) return;
      const toolResults = httpCalls.map((call, i): ChatMessage => ({ role: 'tool', toolCallId: call.id, content: results[i]!.content }));
      messages.push({ role: 'assistant', content: roundText, toolCalls: httpCalls }, ...toolResults);
      // In the call's conversation the spoken words live in the reply's one assistant message (what
      // was heard); the exchange only records the calls and their results.
      utterance.toolMessages.push({ role: 'assistant', content: '', toolCalls: httpCalls }, ...toolResults);
    }
    for (const segment of chunker.flush()) pushSegment(segment);
    segments.end();
  }

  private async runHttpTools(calls: ToolCall[], signal: AbortSignal, say: (line: string) => void): Promise<ToolResult[]> {
    const started = performance.now();
    const filler = setTimeout(() => {
      const line = this.tools.spec(calls[0]!.name)?.filler;
      if (line !== undefined && !signal.aborted) say(line);
    }, TOOL_FILLER_AFTER_MS);
    try {
      return await Promise.all(
        calls.map(async (call) => {
          const result = await this.tools.run(call, signal);
          const ms = Math.round(performance.now() - started);
          this.logger.info({ event: 'http_tool', name: call.name, ok: result.ok, ms, ...(result.ok ? {} : { reason: result.reason }) }, 'tool call');
          this.emit({ type: 'tool_result', name: call.name, ok: result.ok, ms });
          return result;
        }),
      );
    } finally {
      clearTimeout(filler);
    }
  }

  /** The conversation as the LLM sees it: under the token budget, older turns summarized. */
  private contextMessages(): ChatMessage[] {
    const fitted = fitToBudget(this.conversation, {
      budgetTokens: this.contextBudgetTokens,
      ...(this.summary === undefined ? {} : { summary: this.summary.text, summaryCoversUpTo: this.summary.coversUpTo }),
    });
    this.maybeSummarize(fitted.summarizedUpTo);
    return fitted.messages;
  }

  /** Older turns fell out of the window: have them summarized between turns, off the hot path. */
  private maybeSummarize(upTo: number): void {
    if (this.summarizer === undefined || upTo <= 1 || this.summarizing !== undefined) return;
    if (this.summary !== undefined && this.summary.coversUpTo >= upTo) return;
    const controller = new AbortController();
    this.summarizing = controller;
    // Only what the current summary does not cover yet, folded into it: the request stays small.
    const from = this.summary?.coversUpTo ?? 0;
    const older = this.conversation.slice(from, upTo).filter((m) => m.role !== 'system');
    void this.summarizer
      .summarize(older, controller.signal, this.summary?.text)
      .then(
        (text) => {
          if (text.trim() !== '' && !this.ended) this.summary = { text: text.trim(), coversUpTo: upTo };
        },
        (error: Error) => this.logger.warn({ event: 'summary_failed', err: error.message }, 'could not summarize older turns; using an extractive summary'),
      )
      .finally(() => {
        if (this.summarizing === controller) this.summarizing = undefined;
      });
  }

  // ── speculative generation ────────────────────────────────────────────────────────────────────
  /** At a pause in the caller's speech: answer the partial transcript already, without speaking it. */
  private maybeSpeculate(): void {
    if (!this.speculativeLlm || this.degradedReason !== undefined || this.ended) return;
    if (this.asr === undefined || this.hasCarriedText || this.state.phase !== 'listening') return;
    const text = this.latestPartial.trim();
    if (text === '' || sameUtterance(text, this.speculatedText)) return;
    this.cancelSpeculation('newer partial');
    this.speculatedText = text;
    const messages: ChatMessage[] = [...this.contextMessages(), { role: 'user', content: text }];
    const startedAt = performance.now();
    this.speculation = new Speculation(
      text,
      (signal) =>
        this.engines.llm.generate({
          callId: this.callId,
          messages,
          tools: this.llmTools,
          signal,
          onFallback: (info) => {
            // Not the answer to adopt: the turn's own request meets the failure and handles it.
            this.logger.warn({ event: 'speculation_llm_failed', reason: info.reason }, 'speculative request failed; dropped');
            queueMicrotask(() => this.cancelSpeculation('LLM failed'));
          },
        }),
      startedAt,
    );
    this.logger.debug({ event: 'speculation_started', text }, 'speculative LLM request on a partial transcript');
    this.emit({ type: 'speculation', outcome: 'started', text });
  }

  private cancelSpeculation(reason: string): void {
    const speculation = this.speculation;
    if (speculation === undefined) return;
    this.speculation = undefined;
    if (speculation.isAdopted) return;
    speculation.cancel();
    this.logger.debug({ event: 'speculation_cancelled', reason, text: speculation.userText }, 'speculation dropped');
    this.emit({ type: 'speculation', outcome: 'cancelled', text: speculation.userText });
  }

  /** The speculative stream, when it answered exactly what the caller turned out to say. */
  private adoptSpeculation(turn: TurnRecord, signal: AbortSignal): AsyncIterable<LlmEvent> | undefined {
    const speculation = this.speculation;
    if (speculation === undefined) return undefined;
    this.speculation = undefined;
    if (speculation.cancelled || !sameUtterance(speculation.userText, turn.userText)) {
      if (!speculation.cancelled) speculation.cancel();
      this.emit({ type: 'speculation', outcome: 'cancelled', text: speculation.userText });
      return undefined;
    }
    turn.speculative = true;
    turn.llmRequestAt = speculation.startedAt;
    this.logger.info({ event: 'speculation_adopted', text: speculation.userText }, 'reply uses the speculative LLM stream');
    this.emit({ type: 'speculation', outcome: 'adopted', text: speculation.userText });
    return speculation.adopt(signal);
  }

  private takeToolCalls(utterance: AgentUtterance): void {
    for (const call of utterance.toolCalls) {
      const action = parseBuiltInToolCall(call);
      if (action === undefined) {
        this.logger.warn({ event: 'unknown_tool', name: call.name }, 'LLM called a tool we do not have');
        continue;
      }
      this.logger.info({ event: 'tool_call', name: call.name, args: call.arguments }, 'agent action');
      this.pendingEnding = { ending: action, endReason: action.kind === 'transfer' ? 'transferred' : 'agent_hung_up' };
    }
  }

  private deliver(message: PlayoutMessage): void {
    if (this.ended) return;
    if (message.kind === 'mark') {
      this.transport.sendMark(message.name);
      return;
    }
    this.transport.sendAudio(message.data);
    this.echoGuard?.onAgentG711(message.data, this.transport.encoding, performance.now());
    const utterance = this.current;
    if (utterance !== undefined && utterance.kind === 'reply') {
      const turn = this.turns[this.turns.length - 1];
      if (turn !== undefined && turn.firstFrameSentAt === undefined) {
        turn.firstFrameSentAt = performance.now();
        this.emit({ type: 'first_frame', atMs: turn.firstFrameSentAt, utteranceId: utterance.id });
        this.logger.info(
          { event: 'reply_first_frame', turn: turn.index, latency: waterfall(turn), ...(turn.speculative ? { speculative: true } : {}) },
          'reply audio on the wire',
        );
      }
    } else if (utterance !== undefined && utterance.kind === 'greeting' && !this.greetingLogged) {
      this.greetingLogged = true;
      this.emit({ type: 'first_frame', atMs: performance.now(), utteranceId: utterance.id });
    }
  }
  private greetingLogged = false;

  private onUtteranceDone(utterance: AgentUtterance): void {
    this.finishUtterance(utterance);
    if (this.current === utterance) this.current = undefined;
    this.emit({ type: 'utterance_done', atMs: performance.now(), utteranceId: utterance.id });
    this.dispatch({ type: 'agent_done' });
    const pending = this.pendingEnding;
    if (pending !== undefined && utterance.kind !== 'greeting') {
      this.pendingEnding = undefined;
      if ((this.state.phase === 'listening' || this.state.phase === 'thinking') && !pending.forced) {
        // The caller spoke up before the last words were out (a barge-in still being judged): what
        // they said decides (see onUserText). A forced ending (maximum duration, drain) does not wait.
        this.endingAwaitsWords = pending;
        this.logger.info({ event: 'call_ending_held', ending: pending.ending }, 'caller spoke over the closing words; their words decide');
        return;
      }
      this.logger.info({ event: 'call_ending', ending: pending.ending }, 'agent ends the call');
      this.transport.finish(pending.ending);
      this.end(pending.endReason);
    }
  }

  /** Puts the heard part of an utterance into the conversation, once. */
  private finishUtterance(utterance: AgentUtterance): void {
    if (!this.utterances.has(utterance.id)) return;
    this.utterances.delete(utterance.id);
    if (utterance.status === 'preparing' || utterance.status === 'speaking') utterance.cancel();
    const heard = utterance.status === 'done' ? utterance.segments.map((s) => s?.text ?? '').join(' ').trim() : utterance.heardText();
    const toolCalls: ToolCall[] = utterance.status === 'done' ? utterance.toolCalls : [];
    // HTTP tools were really called (their effects happened) whether or not the reply was heard.
    this.conversation.push(...utterance.toolMessages);
    if (heard !== '' || toolCalls.length > 0) {
      this.conversation.push({ role: 'assistant', content: heard, ...(toolCalls.length > 0 ? { toolCalls } : {}) });
      for (const call of toolCalls) this.conversation.push({ role: 'tool', toolCallId: call.id, content: 'ok' });
    }
    const turn = utterance.kind === 'reply' ? this.turns[this.turns.length - 1] : undefined;
    if (turn !== undefined) {
      turn.assistantText = heard;
      turn.interrupted = utterance.status === 'interrupted';
    }
    this.logger.info(
      { event: 'agent_utterance', kind: utterance.kind, status: utterance.status, text: heard },
      utterance.status === 'done' ? 'agent said' : 'agent was cut off',
    );
  }

  private newTurnRecord(): TurnRecord {
    return { index: this.turns.length, userText: '', assistantText: '', interrupted: false };
  }

  private onMaxDuration(): void {
    if (this.ended) return;
    this.logger.warn({ event: 'max_duration', seconds: this.timing.maxCallSeconds }, 'call reached its maximum duration');
    this.hangUpWithGoodbye('max_duration');
  }

  /**
   * Ends the call from our side (maximum duration, a drain that ran out of time): the goodbye line
   * cuts whatever was playing, and the call hangs up once it has played, or after a few seconds.
   */
  hangUpWithGoodbye(reason: string): void {
    if (this.ended || this.pendingEnding !== undefined) return;
    const hangUp = (): void => {
      if (this.ended) return;
      this.transport.finish({ kind: 'hang_up', reason });
      this.end(reason);
    };
    // No goodbye to say, or the agent's own closing words were already said (their ending waits
    // for the caller's words): hang up now.
    if (this.profile.goodbye === undefined || this.endingAwaitsWords !== undefined) return hangUp();
    this.stopOutput(performance.now());
    this.pendingEnding = { ending: { kind: 'hang_up', reason }, endReason: reason, forced: true };
    this.speakFixed(this.profile.goodbye, 'prompt');
    setTimeout(hangUp, GOODBYE_GRACE_MS).unref();
  }

  // ── end ───────────────────────────────────────────────────────────────────────────────────────
  /** Ends the session: every stream cancelled, every timer cleared. Idempotent. */
  end(reason: string): void {
    if (this.ended) return;
    const current = this.current;
    if (current !== undefined) {
      current.interrupt(performance.now());
      this.finishUtterance(current);
    }
    this.ended = true;
    this.endReason = reason;
    clearTimeout(this.maxDurationTimer);
    this.vad.close();
    this.speculation?.cancel();
    this.speculation = undefined;
    this.summarizing?.abort();
    this.asr?.cancel();
    this.asr = undefined;
    for (const stream of this.finishingAsr) stream.cancel();
    this.finishingAsr.clear();
    this.scheduler.remove(this.sink);
    this.queue.clear();
    this.utterances.clear();
    this.transport.close(reason);
    this.logger.info(
      {
        event: 'call_ended',
        reason,
        turns: this.turns.length,
        durationMs: Date.now() - this.startedAt.getTime(),
        ...(this.echoChunksHeld > 0 ? { echoHeldMs: this.echoChunksHeld * ((this.engines.vad.chunkSamples / SAMPLE_RATE_8K) * 1000) } : {}),
      },
      'call ended',
    );
    this.emit({ type: 'ended', reason });
    this.endedResolve();
  }

  private emit(event: SessionEvent): void {
    for (const listener of this.listeners) listener(event);
  }
}

/** The turn's latency waterfall in ms relative to the turn decision, for logs. */
export function waterfall(turn: TurnRecord): Record<string, number> {
  const base = turn.turnDecidedAt ?? 0;
  const out: Record<string, number> = {};
  const stages: Array<[string, number | undefined]> = [
    ['speechEnd', turn.speechEndAt],
    ['asrFinal', turn.asrFinalAt],
    ['llmRequest', turn.llmRequestAt],
    ['llmFirstToken', turn.llmFirstTokenAt],
    ['firstSegmentToTts', turn.firstSegmentToTtsAt],
    ['ttsFirstAudio', turn.ttsFirstAudioAt],
    ['firstFrameSent', turn.firstFrameSentAt],
  ];
  for (const [name, at] of stages) if (at !== undefined) out[name] = Math.round((at - base) * 10) / 10;
  return out;
}

