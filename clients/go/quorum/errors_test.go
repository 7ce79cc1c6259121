package quorum

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	routev1 "github.com/quorum-router/quorum/clients/go/gen/quorum/route/v1"
)

func withDetails(t *testing.T, code codes.Code, msg string, details ...protoadapt.MessageV1) error {
	t.Helper()
	st, err := status.New(code, msg).WithDetails(details...)
	if err != nil {
		t.Fatalf("WithDetails: %v", err)
	}
	return st.Err()
}

func TestDecodeInvalidArgument(t *testing.T) {
	err := FromError(withDetails(t, codes.InvalidArgument, "request.messages: at least one message",
		&errdetails.ErrorInfo{Reason: ReasonInvalidRequest, Domain: Domain, Metadata: map[string]string{"field": "messages"}},
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "messages", Description: "at least one message"},
			{Field: "hints.max_cost_usd", Description: "must be positive"},
		}},
	))
	var qe *Error
	if !errors.As(err, &qe) {
		t.Fatalf("want *Error, got %T", err)
	}
	if qe.Code != codes.InvalidArgument || qe.Reason != ReasonInvalidRequest || qe.Domain != Domain {
		t.Fatalf("decoded %+v", qe)
	}
	if qe.Metadata["field"] != "messages" {
		t.Errorf("metadata %v", qe.Metadata)
	}
	if v, ok := qe.Violation("hints.max_cost_usd"); !ok || v.Description != "must be positive" {
		t.Errorf("violation %+v %v", v, ok)
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("status.Code = %v", status.Code(err))
	}
	if qe.Retryable() {
		t.Error("INVALID_ARGUMENT must not be retryable")
	}
	want := "quorum: InvalidArgument INVALID_REQUEST: request.messages: at least one message; " +
		"messages: at least one message; hints.max_cost_usd: must be positive"
	if qe.Error() != want {
		t.Errorf("Error() = %q", qe.Error())
	}
}

func TestDecodeRetryInfoAndFailureDetail(t *testing.T) {
	err := FromError(withDetails(t, codes.Unavailable, "all attempts failed",
		&errdetails.ErrorInfo{Reason: ReasonAllAttemptsFailed, Domain: Domain},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(1500 * time.Millisecond)},
		&routev1.FailureDetail{
			Attempts: []*routev1.Attempt{
				{Model: "sim-flash", Outcome: routev1.AttemptOutcome_ATTEMPT_OUTCOME_FAILED, ErrorReason: "PROVIDER_UNAVAILABLE"},
				{Model: "sim-mid", Outcome: routev1.AttemptOutcome_ATTEMPT_OUTCOME_SKIPPED},
			},
			Plan: &routev1.ExecutionPlan{Strategy: routev1.Strategy_STRATEGY_SINGLE},
		},
	))
	qe := err.(*Error)
	if qe.RetryDelay != 1500*time.Millisecond || !qe.Retryable() {
		t.Errorf("retry delay %v retryable %v", qe.RetryDelay, qe.Retryable())
	}
	if len(qe.Attempts) != 2 || qe.Attempts[0].GetErrorReason() != "PROVIDER_UNAVAILABLE" {
		t.Errorf("attempts %v", qe.Attempts)
	}
	if qe.Plan.GetStrategy() != routev1.Strategy_STRATEGY_SINGLE {
		t.Errorf("plan %v", qe.Plan)
	}
}

func TestFromErrorPlainAndContextErrors(t *testing.T) {
	if FromError(nil) != nil {
		t.Fatal("nil must stay nil")
	}
	plain := FromError(fmt.Errorf("boom")).(*Error)
	if plain.Code != codes.Unknown || plain.Reason != "" {
		t.Errorf("plain %+v", plain)
	}
	deadline := FromError(status.Error(codes.DeadlineExceeded, "too slow"))
	if !errors.Is(deadline, context.DeadlineExceeded) {
		t.Errorf("errors.Is DeadlineExceeded failed for %v", deadline)
	}
	if again := FromError(deadline); again != deadline {
		t.Error("an *Error must be returned as is")
	}
	for _, c := range []struct {
		err  error
		code codes.Code
	}{
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{context.Canceled, codes.Canceled},
		{fmt.Errorf("waiting: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
	} {
		if got := FromError(c.err).(*Error); got.Code != c.code {
			t.Errorf("FromError(%v) code %v, want %v", c.err, got.Code, c.code)
		}
	}
}
