package dev.quorum.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.quorum.route.v1.FeedbackKind;
import dev.quorum.route.v1.FeedbackRequest;
import dev.quorum.route.v1.FeedbackResponse;
import dev.quorum.route.v1.ListModelsResponse;
import dev.quorum.route.v1.PlanResponse;
import dev.quorum.route.v1.RouteRequest;
import dev.quorum.route.v1.RouteResponse;
import dev.quorum.route.v1.RouteStreamResponse;
import io.grpc.Status;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfEnvironmentVariable;

/** Calls against the server named by QUORUM_ADDRESS (host:port); skipped when it is unset. */
@EnabledIfEnvironmentVariable(
    named = "QUORUM_ADDRESS",
    matches = ".+",
    disabledReason =
        "QUORUM_ADDRESS is not set: start `quorum serve` and export QUORUM_ADDRESS=host:port "
            + "(scripts/test_clients.sh does both)")
class LiveServerTest {
  private static final String QUESTION = "What is 2+2?";
  private static QuorumClient client;

  @BeforeAll
  static void connect() {
    client =
        QuorumClient.connect(
            System.getenv("QUORUM_ADDRESS"), Duration.ofSeconds(20), Duration.ofSeconds(60));
  }

  @AfterAll
  static void close() {
    if (client != null) {
      client.close();
    }
  }

  @Test
  void routeAnswersWithContentAndModel() {
    RouteResponse resp = client.route(QuorumClient.userRequest(QUESTION));
    assertFalse(resp.getContent().isEmpty(), "content");
    assertFalse(resp.getModel().isEmpty(), "model");
    assertFalse(resp.getRequestId().isEmpty(), "request id");
    assertTrue(resp.getAttemptsCount() > 0, "attempts");
  }

  @Test
  void planReturnsStagesWithCandidates() {
    PlanResponse resp = client.plan(QuorumClient.userRequest(QUESTION));
    assertTrue(resp.getPlan().getStagesCount() > 0, "stages");
    assertTrue(resp.getPlan().getStages(0).getCandidatesCount() > 0, "candidates");
  }

  @Test
  void feedbackOnARoutedRequestIsRecorded() {
    RouteResponse routed = client.route(QuorumClient.userRequest(QUESTION));
    FeedbackResponse resp =
        client.feedback(
            FeedbackRequest.newBuilder()
                .setRequestId(routed.getRequestId())
                .setKind(FeedbackKind.FEEDBACK_KIND_THUMBS_UP)
                .build());
    assertTrue(resp.getRecorded());
  }

  @Test
  void listModelsReturnsModelsAndTiers() {
    ListModelsResponse resp = client.listModels("");
    assertTrue(resp.getModelsCount() > 0, "models");
    assertTrue(resp.getTiersCount() > 0, "tiers");
  }

  @Test
  void routeStreamStartsWithThePlanAndEndsWithFinal() {
    List<RouteStreamResponse> events = new ArrayList<>();
    try (RouteStream stream = client.routeStream(QuorumClient.userRequest(QUESTION))) {
      for (RouteStreamResponse event : stream) {
        assertNotEquals(RouteStreamResponse.EventCase.ERROR, event.getEventCase(), event::toString);
        events.add(event);
      }
    }
    assertTrue(events.size() >= 2, "events: " + events.size());
    assertEquals(RouteStreamResponse.EventCase.PLAN, events.get(0).getEventCase());
    RouteStreamResponse last = events.get(events.size() - 1);
    assertEquals(RouteStreamResponse.EventCase.FINAL, last.getEventCase());
    assertFalse(last.getFinal().getContent().isEmpty(), "final content");
    assertFalse(last.getFinal().getModel().isEmpty(), "final model");
    assertTrue(
        events.stream().anyMatch(e -> e.getEventCase() == RouteStreamResponse.EventCase.CHUNK),
        "at least one chunk");
  }

  @Test
  void closingAStreamEarlyCancelsIt() {
    try (RouteStream stream = client.routeStream(QuorumClient.userRequest(QUESTION))) {
      assertTrue(stream.hasNext());
      assertEquals(RouteStreamResponse.EventCase.PLAN, stream.next().getEventCase());
    }
  }

  @Test
  void invalidRequestIsInvalidArgumentWithErrorInfoAndBadRequest() {
    QuorumException e =
        assertThrows(QuorumException.class, () -> client.route(RouteRequest.getDefaultInstance()));
    assertEquals(Status.Code.INVALID_ARGUMENT, e.code());
    assertEquals(QuorumException.INVALID_REQUEST, e.reason());
    assertEquals(QuorumException.DOMAIN, e.domain());
    assertTrue(e.violation("messages").isPresent(), () -> e.fieldViolations().toString());
    assertFalse(e.retryable());
  }

  @Test
  void deadlineIsHonoured() {
    QuorumException e =
        assertThrows(
            QuorumException.class,
            () -> client.route(QuorumClient.userRequest(QUESTION), Duration.ofMillis(1)));
    assertEquals(Status.Code.DEADLINE_EXCEEDED, e.code());
  }
}
