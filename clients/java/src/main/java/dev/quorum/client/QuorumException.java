package dev.quorum.client;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import com.google.rpc.RetryInfo;
import dev.quorum.route.v1.Attempt;
import dev.quorum.route.v1.ExecutionPlan;
import dev.quorum.route.v1.FailureDetail;
import io.grpc.Status;
import io.grpc.protobuf.StatusProto;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * A failed call with its gRPC status and the details the server packs into
 * {@code grpc-status-details-bin}: {@code google.rpc.ErrorInfo}, {@code BadRequest},
 * {@code RetryInfo} and {@code quorum.route.v1.FailureDetail}. Every call through
 * {@link QuorumClient} fails with this exception; {@link #from(Throwable)} converts errors of the
 * generated stubs.
 */
public final class QuorumException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  /** ErrorInfo reason of a request the server rejected as invalid. */
  public static final String INVALID_REQUEST = "INVALID_REQUEST";
  /** ErrorInfo reason when no configured model can serve the request. */
  public static final String NO_CANDIDATE = "NO_CANDIDATE";
  /** ErrorInfo reason when every planned attempt failed. */
  public static final String ALL_ATTEMPTS_FAILED = "ALL_ATTEMPTS_FAILED";
  /** ErrorInfo domain of errors raised by Quorum itself. */
  public static final String DOMAIN = "quorum.dev";

  private final transient Status status;
  private final String reason;
  private final String domain;
  private final Map<String, String> metadata;
  private final List<FieldViolation> fieldViolations;
  private final transient Duration retryDelay;
  private final transient List<Attempt> attempts;
  private final transient ExecutionPlan plan;

  private QuorumException(Status status, com.google.rpc.Status details, Throwable cause) {
    super(describe(status), cause);
    this.status = status;
    String reason = "";
    String domain = "";
    Map<String, String> metadata = Map.of();
    List<FieldViolation> violations = new ArrayList<>();
    Duration retryDelay = null;
    List<Attempt> attempts = List.of();
    ExecutionPlan plan = null;
    for (Any any : details == null ? List.<Any>of() : details.getDetailsList()) {
      try {
        if (any.is(ErrorInfo.class)) {
          ErrorInfo info = any.unpack(ErrorInfo.class);
          reason = info.getReason();
          domain = info.getDomain();
          metadata = Map.copyOf(info.getMetadataMap());
        } else if (any.is(BadRequest.class)) {
          for (BadRequest.FieldViolation v : any.unpack(BadRequest.class).getFieldViolationsList()) {
            violations.add(new FieldViolation(v.getField(), v.getDescription(), v.getReason()));
          }
        } else if (any.is(RetryInfo.class)) {
          com.google.protobuf.Duration d = any.unpack(RetryInfo.class).getRetryDelay();
          retryDelay = Duration.ofSeconds(d.getSeconds(), d.getNanos());
        } else if (any.is(FailureDetail.class)) {
          FailureDetail failure = any.unpack(FailureDetail.class);
          attempts = List.copyOf(failure.getAttemptsList());
          plan = failure.hasPlan() ? failure.getPlan() : null;
        }
      } catch (InvalidProtocolBufferException e) {
        addSuppressed(e); // a malformed detail is dropped; the status itself still stands
      }
    }
    this.reason = reason;
    this.domain = domain;
    this.metadata = metadata;
    this.fieldViolations = List.copyOf(violations);
    this.retryDelay = retryDelay;
    this.attempts = attempts;
    this.plan = plan;
  }

  /**
   * Convert any throwable from a gRPC call: a {@code QuorumException} is returned as is; a
   * {@code StatusRuntimeException} or {@code StatusException} (anywhere in the cause chain) is
   * decoded with its details; anything else becomes {@code UNKNOWN}.
   */
  public static QuorumException from(Throwable t) {
    if (t instanceof QuorumException q) {
      return q;
    }
    Status status = Status.fromThrowable(t);
    return new QuorumException(status, StatusProto.fromThrowable(t), t);
  }

  private static String describe(Status status) {
    String message = status.getDescription();
    return message == null || message.isEmpty()
        ? status.getCode().name()
        : status.getCode().name() + ": " + message;
  }

  /** The gRPC status. */
  public Status status() {
    return status;
  }

  /** The gRPC status code. */
  public Status.Code code() {
    return status.getCode();
  }

  /** ErrorInfo reason in UPPER_SNAKE, e.g. {@link #INVALID_REQUEST}; empty when absent. */
  public String reason() {
    return reason;
  }

  /** ErrorInfo domain, {@link #DOMAIN} for Quorum's own errors; empty when absent. */
  public String domain() {
    return domain;
  }

  /** ErrorInfo metadata; empty when absent. */
  public Map<String, String> metadata() {
    return metadata;
  }

  /** BadRequest field violations (INVALID_ARGUMENT); empty when absent. */
  public List<FieldViolation> fieldViolations() {
    return fieldViolations;
  }

  /** The violation on {@code field}, if any. */
  public Optional<FieldViolation> violation(String field) {
    return fieldViolations.stream().filter(v -> v.field().equals(field)).findFirst();
  }

  /** RetryInfo delay (RESOURCE_EXHAUSTED), if the server set one. */
  public Optional<Duration> retryDelay() {
    return Optional.ofNullable(retryDelay);
  }

  /** FailureDetail attempts (UNAVAILABLE), in start order; empty when absent. */
  public List<Attempt> attempts() {
    return attempts;
  }

  /** FailureDetail plan, if the server attached one. */
  public Optional<ExecutionPlan> plan() {
    return Optional.ofNullable(plan);
  }

  /** True when the same request may succeed later: UNAVAILABLE or RESOURCE_EXHAUSTED. */
  public boolean retryable() {
    return code() == Status.Code.UNAVAILABLE || code() == Status.Code.RESOURCE_EXHAUSTED;
  }
}
