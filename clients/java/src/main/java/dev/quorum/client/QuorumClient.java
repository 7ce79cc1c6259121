package dev.quorum.client;

import dev.quorum.route.v1.FeedbackRequest;
import dev.quorum.route.v1.FeedbackResponse;
import dev.quorum.route.v1.ListModelsRequest;
import dev.quorum.route.v1.ListModelsResponse;
import dev.quorum.route.v1.Message;
import dev.quorum.route.v1.PlanRequest;
import dev.quorum.route.v1.PlanResponse;
import dev.quorum.route.v1.Role;
import dev.quorum.route.v1.RouteRequest;
import dev.quorum.route.v1.RouteResponse;
import dev.quorum.route.v1.RouteServiceGrpc;
import dev.quorum.route.v1.RouteStreamRequest;
import dev.quorum.route.v1.RouteStreamResponse;
import io.grpc.Channel;
import io.grpc.Context;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.StatusRuntimeException;
import java.time.Duration;
import java.util.Iterator;
import java.util.Objects;
import java.util.concurrent.TimeUnit;

/**
 * A thin helper over the generated {@link RouteServiceGrpc} stubs: every call gets a deadline
 * (the client's default unless one is given), and every failure is a {@link QuorumException}
 * with the decoded status details. Thread-safe; close it to shut down a channel it created.
 *
 * <pre>{@code
 * try (QuorumClient client = QuorumClient.connect("quorum.internal:50051")) {
 *   RouteResponse resp = client.route(QuorumClient.userRequest("What is 2+2?"), Duration.ofSeconds(5));
 * }
 * }</pre>
 */
public final class QuorumClient implements AutoCloseable {
  /** Deadline of unary calls made without one. */
  public static final Duration DEFAULT_TIMEOUT = Duration.ofSeconds(30);
  /** Deadline of streams opened without one. */
  public static final Duration DEFAULT_STREAM_TIMEOUT = Duration.ofMinutes(2);

  private final Channel channel;
  private final ManagedChannel owned;
  private final Duration timeout;
  private final Duration streamTimeout;
  private final RouteServiceGrpc.RouteServiceBlockingStub blocking;

  private QuorumClient(Channel channel, ManagedChannel owned, Duration timeout, Duration streamTimeout) {
    this.channel = channel;
    this.owned = owned;
    this.timeout = positive(timeout, "timeout");
    this.streamTimeout = positive(streamTimeout, "streamTimeout");
    this.blocking = RouteServiceGrpc.newBlockingStub(channel);
  }

  /** A client over a new plaintext channel to {@code target} ("host:port" or a gRPC target URI). */
  public static QuorumClient connect(String target) {
    return connect(target, DEFAULT_TIMEOUT, DEFAULT_STREAM_TIMEOUT);
  }

  /** Like {@link #connect(String)}, with the default deadlines given. */
  public static QuorumClient connect(String target, Duration timeout, Duration streamTimeout) {
    ManagedChannel channel =
        Grpc.newChannelBuilder(Objects.requireNonNull(target, "target"), InsecureChannelCredentials.create())
            .build();
    return new QuorumClient(channel, channel, timeout, streamTimeout);
  }

  /**
   * A client over a channel the caller built (e.g. with TLS credentials) and keeps ownership of:
   * {@link #close()} leaves it open.
   */
  public static QuorumClient over(Channel channel, Duration timeout, Duration streamTimeout) {
    return new QuorumClient(Objects.requireNonNull(channel, "channel"), null, timeout, streamTimeout);
  }

  /** A request holding one user message. */
  public static RouteRequest userRequest(String text) {
    return RouteRequest.newBuilder()
        .addMessages(Message.newBuilder().setRole(Role.ROLE_USER).setContent(text))
        .build();
  }

  /** Route with the default deadline. */
  public RouteResponse route(RouteRequest request) {
    return route(request, timeout);
  }

  /** Classify, plan and execute {@code request} within {@code deadline}. */
  public RouteResponse route(RouteRequest request, Duration deadline) {
    try {
      return stub(deadline).route(request);
    } catch (StatusRuntimeException e) {
      throw QuorumException.from(e);
    }
  }

  /** Plan with the default deadline. */
  public PlanResponse plan(RouteRequest request) {
    return plan(request, timeout);
  }

  /** What {@link #route} would do for {@code request}, without calling a model. */
  public PlanResponse plan(RouteRequest request, Duration deadline) {
    try {
      return stub(deadline).plan(PlanRequest.newBuilder().setRequest(request).build());
    } catch (StatusRuntimeException e) {
      throw QuorumException.from(e);
    }
  }

  /** The configured models; an empty tier lists all. */
  public ListModelsResponse listModels(String tier) {
    try {
      return stub(timeout).listModels(ListModelsRequest.newBuilder().setTier(tier).build());
    } catch (StatusRuntimeException e) {
      throw QuorumException.from(e);
    }
  }

  /** Record the outcome of an earlier request. */
  public FeedbackResponse feedback(FeedbackRequest request) {
    try {
      return stub(timeout).feedback(request);
    } catch (StatusRuntimeException e) {
      throw QuorumException.from(e);
    }
  }

  /** RouteStream with the default stream deadline. */
  public RouteStream routeStream(RouteRequest request) {
    return routeStream(request, streamTimeout);
  }

  /**
   * Route {@code request} and stream its events within {@code deadline}. Close the returned
   * stream to cancel the call early.
   */
  public RouteStream routeStream(RouteRequest request, Duration deadline) {
    Context.CancellableContext context = Context.current().withCancellation();
    RouteStreamRequest streamRequest = RouteStreamRequest.newBuilder().setRequest(request).build();
    try {
      Iterator<RouteStreamResponse> events =
          context.call(() -> stub(deadline).routeStream(streamRequest));
      return new RouteStream(context, events);
    } catch (Exception e) {
      context.cancel(e);
      throw QuorumException.from(e);
    }
  }

  /** The generated blocking stub with {@code deadline} set, for calls the helper does not wrap. */
  public RouteServiceGrpc.RouteServiceBlockingStub stub(Duration deadline) {
    return blocking.withDeadlineAfter(positive(deadline, "deadline").toNanos(), TimeUnit.NANOSECONDS);
  }

  /** The channel calls go through. */
  public Channel channel() {
    return channel;
  }

  /** Shuts down the channel if this client created it, waiting up to 5 s for calls to end. */
  @Override
  public void close() {
    if (owned == null) {
      return;
    }
    owned.shutdown();
    try {
      if (!owned.awaitTermination(5, TimeUnit.SECONDS)) {
        owned.shutdownNow();
      }
    } catch (InterruptedException e) {
      owned.shutdownNow();
      Thread.currentThread().interrupt();
    }
  }

  private static Duration positive(Duration d, String name) {
    Objects.requireNonNull(d, name);
    if (d.isNegative() || d.isZero()) {
      throw new IllegalArgumentException(name + " must be positive, got " + d);
    }
    return d;
  }
}
