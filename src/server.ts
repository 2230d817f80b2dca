/**
 * Server assembly: Fastify with the Twilio plugin, health and readiness, and the call sessions.
 * Engines and the agent profile come in from the caller, so tests build a server on any engines.
 */
import formbody from '@fastify/formbody';
import websocket from '@fastify/websocket';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { llmFor, type AgentDirectory, type AgentEntry } from './agent/agent-directory.js';
import { CallSession } from './agent/call-session.js';
import type { ConversationSummarizer } from './agent/context-budget.js';
import type { PromptCache } from './agent/prompt-cache.js';
import { SessionRegistry } from './agent/session-registry.js';
import { PlayoutScheduler } from './audio/playout-scheduler.js';
import type { TritonReadiness } from './engines/triton/readiness.js';
import type { Asr, Engines, Llm, SharedEngines, Tts } from './engines/types.js';
import twilioRoutes, { WS_MAX_PAYLOAD } from './telephony/twilio/routes.js';
import type { LiveCallSnapshot } from './live/types.js';
import type { PostCallJob } from './post-call/job.js';
import { liveSnapshotFor, postCallJobFor, type CallMeta } from './post-call/session-job.js';

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
  mirror?: { upsert(snapshot: LiveCallSnapshot): void; remove(callSid: string): void } | undefined;
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
}

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
  const scheduler = deps.scheduler ?? new PlayoutScheduler();

  /** Mirrors the call while it lives; when it ends, files its post-call job (then drops the mirror). */
  const trackCall = (session: CallSession, meta: CallMeta): void => {
    const { mirror, postCall } = deps;
    if (mirror !== undefined) {
      mirror.upsert(liveSnapshotFor(session, meta));
      session.onEvent((event) => {
        if (event.type === 'turn_decided' || event.type === 'first_frame' || event.type === 'interrupted') mirror.upsert(liveSnapshotFor(session, meta));
      });
    }
    void session.endedPromise.then(async () => {
      if (postCall !== undefined) await postCall.enqueue(postCallJobFor(session, meta));
      mirror?.remove(session.callId);
    });
  };
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
      trackCall(session, meta);
      sessions.add(session);
      session.start();
      return session;
    },
    findSession: (callSid) => sessions.get(callSid),
    recordEnding: (callSid, ending) => sessions.recordEnding(callSid, ending),
    takeEnding: (callSid) => sessions.takeEnding(callSid),
  });

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

  return {
    app,
    sessions,
    scheduler,
    startDraining: () => {
      draining = true;
    },
  };
}
