/**
 * Server assembly: Fastify with the Twilio plugin, health and readiness, and the call sessions.
 * Engines and the agent profile come in from the caller, so tests build a server on any engines.
 */
import formbody from '@fastify/formbody';
import websocket from '@fastify/websocket';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { registerAnalystApi } from './api/index.js';
import { llmFor, type AgentDirectory, type AgentEntry } from './agent/agent-directory.js';
import { CallSession } from './agent/call-session.js';
import type { ConversationSummarizer } from './agent/context-budget.js';
import type { PromptCache } from './agent/prompt-cache.js';
import { SessionRegistry } from './agent/session-registry.js';
import { PlayoutScheduler, pacingEarlyMs } from './audio/playout-scheduler.js';
import type { TritonReadiness } from './engines/triton/readiness.js';
import type { Asr, Engines, Llm, SharedEngines, Tts } from './engines/types.js';
import twilioRoutes, { WS_MAX_PAYLOAD } from './telephony/twilio/routes.js';
import type { LiveCallSnapshot } from './live/types.js';
import type { PostCallJob } from './post-call/job.js';
import { liveSnapshotFor, postCallJobFor, type CallMeta } from './post-call/session-job.js';
import type { CallLedger } from './store/call-ledger.js';
import type { CallStore } from './store/call-store.js';

export interface ServerDeps {
  config: Config;
  engines: SharedEngines;
  /** The agent (script, profile, fallback) for each called number. */
  agents: AgentDirectory;
  /** Wraps the configured LLM around a number's scripted agent; undefined: the script answers. */
  remoteLlm?: ((fallback: Llm) => Llm) | undefined;
  prompts: PromptCache;
  /** Local engines a call moves to when a Triton stage fails mid-call (and starts on while Triton is down). */
  degraded?: { asr: Asr; tts: Tts } | undefined;
  /** Readiness of the Triton models in use, for `/ready` and for routing new calls. */
  tritonReadiness?: TritonReadiness | undefined;
  /** Summarizes older turns of long calls (the configured LLM); extractive summaries without one. */
  summarizer?: ConversationSummarizer | undefined;
  /** Where ended calls go for post-call processing (one job per call SID, however often it is told). */
  postCall?: { enqueue(job: PostCallJob): Promise<unknown> } | undefined;
  /** The Redis mirror of live calls (written off the audio path; never awaited). */
  mirror?:
    | {
        upsert(snapshot: LiveCallSnapshot): void;
        remove(callSid: string): void;
        /** Whether some instance still has the call live (Redis); throws when it cannot tell. */
        isLiveAnywhere?(callSid: string): Promise<boolean>;
      }
    | undefined;
  /** The durable store's server side: call rows at arrival, recording metadata, recording policy. */
  ledger?: CallLedger | undefined;
  /** The durable store, for the analysts' read API (`/v1`). */
  store?: CallStore | undefined;
  /** Which engine serves each stage, for `/ready`. */
  describeEngines?: () => Record<string, string>;
  /** Defaults to a fresh scheduler; benchmarks pass one in to read its pacing figures. */
  scheduler?: PlayoutScheduler;
  /** Fastify logger options (pino); tests pass `false` or a level. */
  logger?: boolean | { level: string };
}

export interface VoiceServer {
  app: FastifyInstance;
  sessions: SessionRegistry;
  scheduler: PlayoutScheduler;
  /** Stop accepting calls; `/ready` turns false at once. */
  startDraining(): void;
  /**
   * Graceful drain: stop accepting calls, let the live ones finish, and after `timeoutMs` say the
   * goodbye line and hang up on those still going; resolves once every ended call's post-call job
   * was handed to the queue.
   */
  drain(timeoutMs: number): Promise<DrainOutcome>;
}

export interface DrainOutcome {
  /** Calls live when the drain began. */
  liveAtStart: number;
  /** Of those, the ones hung up on when the drain timed out. */
  hungUp: number;
}

/** Our number on a call: the called one inbound, the calling one outbound. */
function ourNumber(call: { direction: 'inbound' | 'outbound'; from?: string | undefined; to?: string | undefined } | undefined): string | undefined {
  if (call === undefined) return undefined;
  return call.direction === 'inbound' ? call.to : call.from;
}

/** Longest wait for a goodbye-and-hang-up at the end of a drain before the session is ended outright. */
const DRAIN_HANG_UP_GRACE_MS = 8000;
/**
 * After a drain, how long the server stays up for Twilio's after-stream webhook of the calls it hung
 * up: Twilio asks it what to do once the stream closes, and a refused connection there makes Twilio
 * play its "application error" message to a caller who has just heard our goodbye.
 */
const DRAIN_AFTER_STREAM_GRACE_MS = 5000;
/** How long an ended call's SID is remembered, so a late status callback does not file a second, empty job. */
const RECENTLY_ENDED_MS = 10 * 60_000;

export async function buildServer(deps: ServerDeps): Promise<VoiceServer> {
  const { config } = deps;
  const app = Fastify({
    logger: deps.logger ?? { level: config.logLevel },
    // Twilio webhooks are small forms; nothing here needs big bodies.
    bodyLimit: 64 * 1024,
  });
  const sessions = new SessionRegistry();
  const perAgent = new Map<AgentEntry, Engines>();
  const enginesFor = (agent: AgentEntry): Engines => {
    let engines = perAgent.get(agent);
    if (engines === undefined) {
      engines = { ...deps.engines, llm: llmFor(agent, deps.remoteLlm), fallbackLlm: agent.scripted };
      perAgent.set(agent, engines);
    }
    return engines;
  };
  const scheduler = deps.scheduler ?? new PlayoutScheduler(undefined, { earlyMs: pacingEarlyMs(config.audio.outboundLeadMs) });
  const { ledger } = deps;

  /** Post-call jobs being handed to the queue (a drain waits for them). */
  const filing = new Set<Promise<void>>();
  const recentlyEnded = new Map<string, number>();
  const file = (job: PostCallJob): Promise<void> => {
    const postCall = deps.postCall;
    if (postCall === undefined) return Promise.resolve();
    const pending = postCall.enqueue(job).then(
      () => undefined,
      (err: unknown) => app.log.error({ event: 'post_call_not_filed', callSid: job.callSid, err: err instanceof Error ? err.message : String(err) }, 'post-call job not filed'),
    );
    filing.add(pending);
    void pending.finally(() => filing.delete(pending));
    return pending;
  };

  /** Mirrors the call while it lives; when it ends, files its post-call job (then drops the mirror). */
  const trackCall = (session: CallSession, meta: CallMeta): void => {
    const { mirror } = deps;
    if (mirror !== undefined) {
      mirror.upsert(liveSnapshotFor(session, meta));
      session.onEvent((event) => {
        // A turn's caller text, the reply's start, and what of the reply was heard (all of it, or up to an interruption).
        if (event.type === 'turn_decided' || event.type === 'first_frame' || event.type === 'interrupted' || event.type === 'utterance_done') {
          mirror.upsert(liveSnapshotFor(session, meta));
        }
      });
    }
    void session.endedPromise.then(async () => {
      const now = Date.now();
      for (const [sid, at] of recentlyEnded) if (now - at > RECENTLY_ENDED_MS) recentlyEnded.delete(sid);
      recentlyEnded.set(session.callId, now);
      await file(postCallJobFor(session, meta));
      mirror?.remove(session.callId);
    });
  };

  /**
   * A final status for a call. Its live session here ends. A call with no session anywhere (the
   * caller hung up before the stream opened) still gets its one job, with no turns, so its row is
   * finished; a call live on another instance is that instance's to file (or its sweeper's).
   */
  const callFinished = async (callSid: string, status: string): Promise<void> => {
    const session = sessions.get(callSid);
    if (session !== undefined) return session.onStreamEnd(`status_${status}`);
    if (recentlyEnded.has(callSid) || deps.postCall === undefined) return;
    try {
      if ((await deps.mirror?.isLiveAnywhere?.(callSid)) === true) return;
    } catch (err) {
      app.log.warn({ event: 'status_owner_unknown', callSid, err: err instanceof Error ? err.message : String(err) }, 'cannot tell whether another instance has the call; leaving it to its owner or the sweeper');
      return;
    }
    if (sessions.get(callSid) !== undefined || recentlyEnded.has(callSid)) return;
    const arrived = arrivals.get(callSid);
    const now = new Date().toISOString();
    app.log.info({ event: 'call_ended_without_stream', callSid, status }, 'call ended before its stream opened');
    await file({
      callSid,
      provider: 'twilio',
      direction: arrived?.direction ?? 'inbound',
      ...(arrived?.from === undefined ? {} : { from: arrived.from }),
      ...(arrived?.to === undefined ? {} : { to: arrived.to }),
      ...(ourNumber(arrived) === undefined ? {} : { number: ourNumber(arrived) }),
      startedAt: arrived?.at ?? now,
      endedAt: now,
      endReason: `status_${status}`,
      turns: [],
    });
  };
  /** What the voice webhook told us of calls not yet streaming (bounded; dropped once they stream or end). */
  const arrivals = new Map<string, { from?: string | undefined; to?: string | undefined; direction: 'inbound' | 'outbound'; at: string }>();

  let draining = false;

  await app.register(formbody);
  await app.register(websocket, { options: { maxPayload: WS_MAX_PAYLOAD } });

  if (config.twilioAuthToken === undefined) {
    app.log.warn('TWILIO_AUTH_TOKEN is not set and ALLOW_UNSIGNED_WEBHOOKS=1: webhook signatures are NOT checked');
  }

  await app.register(twilioRoutes, {
    publicUrl: config.publicUrl,
    authToken: config.twilioAuthToken,
    streamTokenSecret: config.streamTokenSecret,
    streamTokenTtlSeconds: config.streamTokenTtlSeconds,
    acceptingCalls: () => !draining,
    declineWith: config.drain.newCalls,
    openSession: (start, transport, logger) => {
      const agent = deps.agents.forNumber(start.customParameters['to']);
      // While Triton is down, new calls start on the local engines and the script, instead of failing.
      const startDegraded = deps.tritonReadiness !== undefined && !deps.tritonReadiness.allReady;
      const session = new CallSession({
        callId: start.callSid,
        transport,
        engines: enginesFor(agent),
        ...(deps.degraded === undefined ? {} : { degraded: deps.degraded }),
        startDegraded,
        speculativeLlm: config.speculativeLlm,
        contextBudgetTokens: config.contextBudgetTokens,
        ...(deps.summarizer === undefined ? {} : { summarizer: deps.summarizer }),
        profile: agent.profile,
        prompts: deps.prompts,
        scheduler,
        logger: logger as Logger,
        timing: {
          ...config.turn,
          outboundFrameMs: config.audio.outboundFrameMs,
          outboundLeadMs: config.audio.outboundLeadMs,
          maxCallSeconds: config.maxCallSeconds,
        },
      });
      const meta: CallMeta = {
        provider: 'twilio',
        direction: 'inbound',
        from: start.customParameters['from'],
        to: start.customParameters['to'],
        number: start.customParameters['to'],
      };
      arrivals.delete(start.callSid);
      trackCall(session, meta);
      sessions.add(session);
      session.start();
      return session;
    },
    findSession: (callSid) => sessions.get(callSid),
    recordEnding: (callSid, ending) => sessions.recordEnding(callSid, ending),
    takeEnding: (callSid) => sessions.takeEnding(callSid),
    callArrived: (call) => {
      if (arrivals.size >= 10_000) arrivals.delete(arrivals.keys().next().value as string);
      arrivals.set(call.callSid, { from: call.from, to: call.to, direction: call.direction, at: new Date().toISOString() });
      deps.ledger?.callStarted({ callSid: call.callSid, provider: 'twilio', direction: call.direction, from: call.from ?? null, to: call.to ?? null, number: ourNumber(call) ?? null });
    },
    callFinished: (callSid, status) => {
      void callFinished(callSid, status).finally(() => arrivals.delete(callSid));
    },
    ...(ledger === undefined
      ? {}
      : {
          recordingEnabled: (to: string | undefined) => ledger.recordingEnabled(to),
          saveRecording: (recording) => ledger.saveRecording(recording),
        }),
  });

  if (deps.store !== undefined) await registerAnalystApi(app, { store: deps.store, apiKeys: config.apiKeys });

  app.get('/health', async () => ({ status: 'ok', calls: sessions.size }));
  app.get('/ready', async (_request, reply) => {
    const vadFailure = deps.engines.vad.failure?.message;
    const tritonReady = deps.tritonReadiness?.allReady ?? true;
    const ready = !draining && vadFailure === undefined && tritonReady;
    return reply.code(ready ? 200 : 503).send({
      ready,
      draining,
      ...(vadFailure === undefined ? {} : { failure: `vad: ${vadFailure}` }),
      calls: sessions.size,
      engines: deps.describeEngines?.() ?? { vad: 'silero-v5', asr: 'pocketsphinx', llm: enginesFor(deps.agents.fallback).llm.name, tts: deps.engines.tts.name },
      ...(deps.tritonReadiness === undefined ? {} : { triton: { ready: tritonReady, models: deps.tritonReadiness.snapshot() } }),
    });
  });

  app.addHook('onClose', async () => {
    for (const session of sessions.all()) session.end('server_shutdown');
    scheduler.stop();
  });

  const drain = async (timeoutMs: number): Promise<DrainOutcome> => {
    draining = true;
    const live = sessions.all();
    app.log.info({ event: 'drain_started', calls: live.length, timeoutMs }, 'draining: no new calls; waiting for live calls to end');
    const allEnded = (): Promise<void> => Promise.all(live.map((session) => session.endedPromise)).then(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      allEnded().then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), timeoutMs))),
    ]);
    clearTimeout(timer);
    let hungUp = 0;
    if (timedOut) {
      for (const session of live) {
        if (session.isEnded) continue;
        hungUp++;
        session.hangUpWithGoodbye('drain_timeout');
      }
      app.log.warn({ event: 'drain_timeout', hungUp }, 'drain timed out: saying goodbye and hanging up on the calls still live');
      await Promise.race([allEnded(), new Promise((resolve) => setTimeout(resolve, DRAIN_HANG_UP_GRACE_MS).unref())]);
      for (const session of live) session.end('drain_timeout');
    }
    // Every ended call's job handed to the queue (which keeps it pending through a Redis outage).
    await new Promise((resolve) => setImmediate(resolve));
    await Promise.allSettled([...filing]);
    const awaitingTwilio = (): number => live.filter((session) => sessions.hasPendingEnding(session.callId)).length;
    const until = Date.now() + DRAIN_AFTER_STREAM_GRACE_MS;
    while (awaitingTwilio() > 0 && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 50));
    if (awaitingTwilio() > 0) {
      app.log.warn({ event: 'drain_after_stream_missing', calls: awaitingTwilio() }, 'Twilio did not ask the after-stream URL for some hung-up calls');
    }
    app.log.info({ event: 'drain_done', calls: live.length, hungUp }, 'drain done: every call ended and its post-call job filed');
    return { liveAtStart: live.length, hungUp };
  };

  return {
    app,
    sessions,
    scheduler,
    startDraining: () => {
      draining = true;
    },
    drain,
  };
}
