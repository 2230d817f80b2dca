/** The gRPC server around the handlers: listen, stop (in-flight calls die), listen again on the same port. */
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { tritonProtocol, type ModelInferRequest, type ModelStreamInferResponse } from '../../src/engines/triton/protocol.js';
import type { StandInState } from './dispatch.js';
import { StreamSession } from './stream.js';
import { healthHandlers, unaryHandlers } from './unary.js';

const MESSAGE_LIMIT = 64 * 1024 * 1024;
const SHUTDOWN_DETAILS = 'Triton stand-in stopped: connection dropped';

export class StandInServer {
  private server: grpc.Server | undefined;
  private boundPort = 0;

  constructor(
    private readonly state: StandInState,
    private readonly host: string,
  ) {}

  get port(): number {
    return this.boundPort;
  }

  get listening(): boolean {
    return this.server !== undefined;
  }

  /** Binds (0 = ephemeral); retries briefly while a just-closed listener still holds the port. */
  async listen(port: number): Promise<number> {
    if (this.server !== undefined) throw new Error('the Triton stand-in is already listening');
    const { inferenceService, healthService } = tritonProtocol();
    const server = new grpc.Server({ 'grpc.max_receive_message_length': MESSAGE_LIMIT, 'grpc.max_send_message_length': MESSAGE_LIMIT });
    server.addService(inferenceService, {
      ...unaryHandlers(this.state),
      ModelStreamInfer: (call: grpc.ServerDuplexStream<ModelInferRequest, ModelStreamInferResponse>) => void new StreamSession(this.state, call),
    });
    server.addService(healthService, healthHandlers(this.state));
    for (let attempt = 0; ; attempt++) {
      try {
        this.boundPort = await bind(server, `${this.host}:${port}`);
        break;
      } catch (error) {
        if (attempt >= 20 || port === 0) {
          server.forceShutdown();
          throw error;
        }
        await sleep(50);
      }
    }
    this.server = server;
    return this.boundPort;
  }

  /**
   * Ends every call in flight with UNAVAILABLE (what a client sees when Triton goes away; grpc-js's
   * own forceShutdown would show CANCELLED), then drops the connections and the listener.
   */
  async stop(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    this.server = undefined;
    for (const call of [...this.state.active]) call.shutdown(SHUTDOWN_DETAILS);
    // Let the statuses go out before the connections are torn down.
    await sleep(20);
    server.forceShutdown();
    await sleep(10);
  }
}

function bind(server: grpc.Server, address: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (error, port) => (error ? reject(error) : resolve(port)));
  });
}
