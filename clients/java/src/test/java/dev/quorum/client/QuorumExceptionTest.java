package dev.quorum.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.Any;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import com.google.rpc.RetryInfo;
import dev.quorum.route.v1.Attempt;
import dev.quorum.route.v1.AttemptOutcome;
import dev.quorum.route.v1.ExecutionPlan;
import dev.quorum.route.v1.FailureDetail;
import dev.quorum.route.v1.Strategy;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * Decoding of status details. Each status goes through gRPC trailers (grpc-status-details-bin)
 * and back, as it does on the wire.
 */
class QuorumExceptionTest {

  private static QuorumException received(Status.Code code, String message, Any... details) {
    com.google.rpc.Status status =
        com.google.rpc.Status.newBuilder()
            .setCode(code.value())
            .setMessage(message)
            .addAllDetails(List.of(details))
            .build();
    StatusRuntimeException sent = StatusProto.toStatusRuntimeException(status);
    Metadata trailers = new Metadata();
    trailers.merge(sent.getTrailers());
    return QuorumException.from(
        Status.fromCodeValue(code.value()).withDescription(message).asRuntimeException(trailers));
  }

  @Test
  void decodesErrorInfoAndBadRequest() {
    QuorumException e =
        received(
            Status.Code.INVALID_ARGUMENT,
            "request.messages: at least one message",
            Any.pack(
                ErrorInfo.newBuilder()
                    .setReason(QuorumException.INVALID_REQUEST)
                    .setDomain(QuorumException.DOMAIN)
                    .putMetadata("field", "messages")
                    .build()),
            Any.pack(
                BadRequest.newBuilder()
                    .addFieldViolations(
                        BadRequest.FieldViolation.newBuilder()
                            .setField("messages")
                            .setDescription("at least one message"))
                    .addFieldViolations(
                        BadRequest.FieldViolation.newBuilder()
                            .setField("hints.max_cost_usd")
                            .setDescription("must be positive"))
                    .build()));
    assertEquals(Status.Code.INVALID_ARGUMENT, e.code());
    assertEquals(QuorumException.INVALID_REQUEST, e.reason());
    assertEquals(QuorumException.DOMAIN, e.domain());
    assertEquals("messages", e.metadata().get("field"));
    assertEquals(2, e.fieldViolations().size());
    assertEquals("must be positive", e.violation("hints.max_cost_usd").orElseThrow().description());
    assertFalse(e.retryable());
    assertTrue(e.retryDelay().isEmpty());
    assertEquals("INVALID_ARGUMENT: request.messages: at least one message", e.getMessage());
  }

  @Test
  void decodesRetryInfoAndFailureDetail() {
    QuorumException e =
        received(
            Status.Code.UNAVAILABLE,
            "all attempts failed",
            Any.pack(ErrorInfo.newBuilder().setReason(QuorumException.ALL_ATTEMPTS_FAILED).build()),
            Any.pack(
                RetryInfo.newBuilder()
                    .setRetryDelay(com.google.protobuf.Duration.newBuilder().setSeconds(1).setNanos(500_000_000))
                    .build()),
            Any.pack(
                FailureDetail.newBuilder()
                    .addAttempts(
                        Attempt.newBuilder()
                            .setModel("sim-flash")
                            .setOutcome(AttemptOutcome.ATTEMPT_OUTCOME_FAILED)
                            .setErrorReason("PROVIDER_UNAVAILABLE"))
                    .addAttempts(
                        Attempt.newBuilder()
                            .setModel("sim-mid")
                            .setOutcome(AttemptOutcome.ATTEMPT_OUTCOME_SKIPPED))
                    .setPlan(ExecutionPlan.newBuilder().setStrategy(Strategy.STRATEGY_SINGLE))
                    .build()));
    assertTrue(e.retryable());
    assertEquals(Duration.ofMillis(1500), e.retryDelay().orElseThrow());
    assertEquals(List.of("sim-flash", "sim-mid"), e.attempts().stream().map(Attempt::getModel).toList());
    assertEquals("PROVIDER_UNAVAILABLE", e.attempts().get(0).getErrorReason());
    assertEquals(Strategy.STRATEGY_SINGLE, e.plan().orElseThrow().getStrategy());
  }

  @Test
  void convertsPlainErrorsAndKeepsQuorumExceptions() {
    QuorumException plain = QuorumException.from(new IllegalStateException("boom"));
    assertEquals(Status.Code.UNKNOWN, plain.code());
    assertEquals("", plain.reason());
    assertTrue(plain.fieldViolations().isEmpty());
    assertSame(plain, QuorumException.from(plain));
    QuorumException deadline =
        QuorumException.from(Status.DEADLINE_EXCEEDED.withDescription("late").asRuntimeException());
    assertEquals(Status.Code.DEADLINE_EXCEEDED, deadline.code());
    assertTrue(deadline.attempts().isEmpty());
  }
}
