package quorum

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	routev1 "github.com/quorum-router/quorum/clients/go/gen/quorum/route/v1"
)

// liveClient dials the server named by QUORUM_ADDRESS (host:port), or skips the test.
func liveClient(t *testing.T) *Client {
	t.Helper()
	addr := os.Getenv("QUORUM_ADDRESS")
	if addr == "" {
		t.Skip("QUORUM_ADDRESS is not set: start `quorum serve` and export QUORUM_ADDRESS=host:port " +
			"(scripts/test_clients.sh does both)")
	}
	c, err := Dial(addr, WithTimeout(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

const question = "What is 2+2?"

func TestLiveRoute(t *testing.T) {
	c := liveClient(t)
	resp, err := c.Route(context.Background(), UserRequest(question))
	if err != nil {
		t.Fatalf("Route: %v", err)
	}
	if resp.GetContent() == "" || resp.GetModel() == "" {
		t.Fatalf("want content and model, got %v", resp)
	}
	if resp.GetRequestId() == "" {
		t.Error("want a generated request_id")
	}
	if len(resp.GetAttempts()) == 0 {
		t.Error("want at least one attempt in the account")
	}
}

func TestLivePlan(t *testing.T) {
	c := liveClient(t)
	resp, err := c.Plan(context.Background(), UserRequest(question))
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	if len(resp.GetPlan().GetStages()) == 0 {
		t.Fatalf("want plan stages, got %v", resp)
	}
	if len(resp.GetPlan().GetStages()[0].GetCandidates()) == 0 {
		t.Errorf("want candidates in the first stage, got %v", resp.GetPlan())
	}
}

func TestLiveFeedback(t *testing.T) {
	c := liveClient(t)
	routed, err := c.Route(context.Background(), UserRequest(question))
	if err != nil {
		t.Fatalf("Route: %v", err)
	}
	resp, err := c.Feedback(context.Background(), &routev1.FeedbackRequest{
		RequestId: routed.GetRequestId(), Kind: routev1.FeedbackKind_FEEDBACK_KIND_THUMBS_UP,
	})
	if err != nil {
		t.Fatalf("Feedback: %v", err)
	}
	if !resp.GetRecorded() {
		t.Fatalf("want recorded feedback, got %v", resp)
	}
}

func TestLiveListModels(t *testing.T) {
	c := liveClient(t)
	resp, err := c.ListModels(context.Background(), "")
	if err != nil {
		t.Fatalf("ListModels: %v", err)
	}
	if len(resp.GetModels()) == 0 || len(resp.GetTiers()) == 0 {
		t.Fatalf("want models and tiers, got %v", resp)
	}
}

func TestLiveRouteStream(t *testing.T) {
	c := liveClient(t)
	var events []*routev1.RouteStreamResponse
	chunks := 0
	var text strings.Builder
	for event, err := range c.RouteStream(context.Background(), UserRequest(question)) {
		if err != nil {
			t.Fatalf("RouteStream after %d events: %v", len(events), err)
		}
		events = append(events, event)
		if chunk := event.GetChunk(); chunk != nil {
			chunks++
			text.WriteString(chunk.GetText())
		}
		if e := event.GetError(); e != nil {
			t.Fatalf("stream ended with an error event: %v", e)
		}
	}
	if len(events) < 2 {
		t.Fatalf("want at least a plan and a final event, got %v", events)
	}
	if events[0].GetPlan() == nil {
		t.Errorf("first event must be the plan, got %v", events[0])
	}
	final := events[len(events)-1].GetFinal()
	if final == nil {
		t.Fatalf("last event must be final, got %v", events[len(events)-1])
	}
	if final.GetContent() == "" || final.GetModel() == "" {
		t.Errorf("final must carry content and model, got %v", final)
	}
	if chunks == 0 {
		t.Error("want at least one chunk event")
	}
}

func TestLiveRouteStreamBreakCancels(t *testing.T) {
	c := liveClient(t)
	n := 0
	for event, err := range c.RouteStream(context.Background(), UserRequest(question)) {
		if err != nil {
			t.Fatalf("RouteStream: %v", err)
		}
		if event.GetPlan() == nil {
			t.Errorf("first event must be the plan, got %v", event)
		}
		n++
		break // leaving the loop must cancel the call without hanging
	}
	if n != 1 {
		t.Fatalf("want one event before break, got %d", n)
	}
}

func TestLiveInvalidRequest(t *testing.T) {
	c := liveClient(t)
	_, err := c.Route(context.Background(), &routev1.RouteRequest{})
	var qe *Error
	if !errors.As(err, &qe) {
		t.Fatalf("want *Error, got %T %v", err, err)
	}
	if qe.Code != codes.InvalidArgument {
		t.Fatalf("want InvalidArgument, got %v", qe)
	}
	if qe.Reason != ReasonInvalidRequest || qe.Domain != Domain {
		t.Errorf("want ErrorInfo %s/%s, got %q/%q", ReasonInvalidRequest, Domain, qe.Reason, qe.Domain)
	}
	if _, ok := qe.Violation("messages"); !ok {
		t.Errorf("want a BadRequest violation on messages, got %+v", qe.FieldViolations)
	}
	if qe.Retryable() {
		t.Error("an invalid request is not retryable")
	}
}

func TestLiveDeadlineIsHonoured(t *testing.T) {
	c := liveClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	_, err := c.Route(ctx, UserRequest(question))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want DeadlineExceeded, got %v", err)
	}
}
