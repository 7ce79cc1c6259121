/**
 * QuorumClient: a thin helper over the generated RouteService descriptor and Connect's gRPC
 * transport (HTTP/2, the gRPC protocol, not gRPC-web). It applies a default deadline to every
 * call that sets none and turns failures into QuorumError.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { type CallOptions, type Client, createClient, type Transport } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";

import { toQuorumError } from "./errors.js";
import {
  type FeedbackRequestSchema,
  type FeedbackResponse,
  type ListModelsResponse,
  type PlanResponse,
  RouteService,
  type RouteStreamResponse,
} from "./gen/quorum/route/v1/route_service_pb.js";
import {
  type RouteRequestSchema,
  type RouteResponse,
  Role,
} from "./gen/quorum/route/v1/types_pb.js";

/** Default deadline of unary calls, in milliseconds. */
export const DEFAULT_TIMEOUT_MS = 30_000;
/** Default deadline of streams, in milliseconds. */
export const DEFAULT_STREAM_TIMEOUT_MS = 120_000;

/** A RouteRequest, as a message or a plain object of its fields. */
export type RouteRequestInit = MessageInitShape<typeof RouteRequestSchema>;

export interface QuorumClientOptions {
  /** Deadline of unary calls without `timeoutMs`; DEFAULT_TIMEOUT_MS otherwise. */
  timeoutMs?: number;
  /** Deadline of streams without `timeoutMs`; DEFAULT_STREAM_TIMEOUT_MS otherwise. */
  streamTimeoutMs?: number;
  /** Use this transport instead of a plaintext gRPC transport to `address` (e.g. for TLS). */
  transport?: Transport;
}

/** A client of one Quorum server. Call close() when done, or the connection keeps node alive. */
export class QuorumClient {
  /** The generated client, for anything the helper does not wrap. Errors are ConnectError. */
  readonly service: Client<typeof RouteService>;
  readonly timeoutMs: number;
  readonly streamTimeoutMs: number;
  readonly #sessions: Http2SessionManager | undefined;

  constructor(address: string, options: QuorumClientOptions = {}) {
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.streamTimeoutMs = options.streamTimeoutMs ?? DEFAULT_STREAM_TIMEOUT_MS;
    let transport = options.transport;
    if (transport === undefined) {
      const baseUrl = /^[a-z][a-z0-9+.-]*:\/\//i.test(address) ? address : `http://${address}`;
      this.#sessions = new Http2SessionManager(baseUrl);
      transport = createGrpcTransport({ baseUrl, sessionManager: this.#sessions });
    }
    this.service = createClient(RouteService, transport);
  }

  /** Classify, plan and execute a request. Rejects with QuorumError. */
  async route(request: RouteRequestInit, options?: CallOptions): Promise<RouteResponse> {
    return this.#unary(() => this.service.route(request, this.#opts(options, this.timeoutMs)));
  }

  /** What route() would do, without calling a model. Rejects with QuorumError. */
  async plan(request: RouteRequestInit, options?: CallOptions): Promise<PlanResponse> {
    return this.#unary(() =>
      this.service.plan({ request }, this.#opts(options, this.timeoutMs)),
    );
  }

  /** The configured models; an empty tier lists all. Rejects with QuorumError. */
  async listModels(tier = "", options?: CallOptions): Promise<ListModelsResponse> {
    return this.#unary(() => this.service.listModels({ tier }, this.#opts(options, this.timeoutMs)));
  }

  /** Record the outcome of an earlier request. Rejects with QuorumError. */
  async feedback(
    request: MessageInitShape<typeof FeedbackRequestSchema>,
    options?: CallOptions,
  ): Promise<FeedbackResponse> {
    return this.#unary(() => this.service.feedback(request, this.#opts(options, this.timeoutMs)));
  }

  /**
   * Route a request and iterate over its events: the plan first, then attempts, chunks, gate
   * verdicts, escalations, votes and fallbacks, and last `final` or `error` (see
   * `event.event.case`). A failed call or broken stream throws QuorumError. Leaving the loop
   * early cancels the call.
   */
  async *routeStream(
    request: RouteRequestInit,
    options?: CallOptions,
  ): AsyncGenerator<RouteStreamResponse, void, undefined> {
    // Connect's stream iterator has no return(): leaving the loop early would leave the call,
    // and the deadline timer that keeps node alive, running until the deadline. So the call
    // gets its own abort signal; on an early exit it is aborted, and one more next() lets
    // Connect see the abort and clear its timer.
    const abort = new AbortController();
    const outer = options?.signal;
    const forward = () => abort.abort(outer?.reason);
    if (outer?.aborted) {
      forward();
    }
    outer?.addEventListener("abort", forward, { once: true });
    const events = this.service
      .routeStream(
        { request },
        { ...this.#opts(options, this.streamTimeoutMs), signal: abort.signal },
      )
      [Symbol.asyncIterator]();
    let finished = false;
    try {
      for (;;) {
        let next: IteratorResult<RouteStreamResponse>;
        try {
          next = await events.next();
        } catch (err) {
          finished = true;
          throw toQuorumError(err);
        }
        if (next.done) {
          finished = true;
          return;
        }
        yield next.value;
      }
    } finally {
      outer?.removeEventListener("abort", forward);
      if (!finished) {
        abort.abort();
        await events.next().catch(() => undefined);
      }
    }
  }

  /** Close the connection; calls still running are aborted. */
  close(): void {
    this.#sessions?.abort();
  }

  #opts(options: CallOptions | undefined, timeoutMs: number): CallOptions {
    return { ...options, timeoutMs: options?.timeoutMs ?? timeoutMs };
  }

  async #unary<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      throw toQuorumError(err);
    }
  }
}

/** Create a client for the server at `address` ("host:port" or a URL). */
export function dial(address: string, options?: QuorumClientOptions): QuorumClient {
  return new QuorumClient(address, options);
}

/** A request holding one user message. */
export function userRequest(text: string): RouteRequestInit {
  return { messages: [{ role: Role.USER, content: text }] };
}
