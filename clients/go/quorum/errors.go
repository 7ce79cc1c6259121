package quorum

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	routev1 "github.com/quorum-router/quorum/clients/go/gen/quorum/route/v1"
)

// Error reasons the server sets in google.rpc.ErrorInfo (domain "quorum.dev"). Others may be
// added; compare Error.Reason with these rather than parsing messages.
const (
	ReasonInvalidRequest    = "INVALID_REQUEST"
	ReasonNoCandidate       = "NO_CANDIDATE"
	ReasonAllAttemptsFailed = "ALL_ATTEMPTS_FAILED"
)

// Domain is the ErrorInfo domain of errors raised by Quorum itself.
const Domain = "quorum.dev"

// FieldViolation is one google.rpc.BadRequest field violation.
type FieldViolation struct {
	// Field is the path of the bad field, e.g. "messages" or "hints.max_cost_usd".
	Field string
	// Description says what is wrong.
	Description string
	// Reason is the violation's machine-readable reason, when the server sets one.
	Reason string
}

// Error is a failed call with its status details decoded. Every error the Client returns is
// an *Error (use errors.As); status.FromError and status.Code also work on it.
type Error struct {
	// Code is the gRPC status code.
	Code codes.Code
	// Message is the status message, meant for developers.
	Message string
	// Reason and Domain come from google.rpc.ErrorInfo; empty when it is absent.
	Reason string
	Domain string
	// Metadata is ErrorInfo's metadata; nil when absent.
	Metadata map[string]string
	// FieldViolations come from google.rpc.BadRequest (INVALID_ARGUMENT).
	FieldViolations []FieldViolation
	// RetryDelay comes from google.rpc.RetryInfo (RESOURCE_EXHAUSTED); 0 when absent.
	RetryDelay time.Duration
	// Attempts and Plan come from quorum.route.v1.FailureDetail (UNAVAILABLE): every attempt
	// in start order, and the plan that was executed.
	Attempts []*routev1.Attempt
	Plan     *routev1.ExecutionPlan

	status *status.Status
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "quorum: %s", e.Code)
	if e.Reason != "" {
		fmt.Fprintf(&b, " %s", e.Reason)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	for _, v := range e.FieldViolations {
		fmt.Fprintf(&b, "; %s: %s", v.Field, v.Description)
	}
	return b.String()
}

// GRPCStatus returns the original status, so status.FromError and status.Code work.
func (e *Error) GRPCStatus() *status.Status { return e.status }

// Is reports a match with context.DeadlineExceeded / context.Canceled for the equivalent codes,
// so errors.Is(err, context.DeadlineExceeded) works on deadline failures.
func (e *Error) Is(target error) bool {
	switch target {
	case context.DeadlineExceeded:
		return e.Code == codes.DeadlineExceeded
	case context.Canceled:
		return e.Code == codes.Canceled
	}
	return false
}

// Retryable reports whether the same request may succeed later: UNAVAILABLE and
// RESOURCE_EXHAUSTED (after RetryDelay, when set).
func (e *Error) Retryable() bool {
	return e.Code == codes.Unavailable || e.Code == codes.ResourceExhausted
}

// Violation returns the field violation on field, if any.
func (e *Error) Violation(field string) (FieldViolation, bool) {
	for _, v := range e.FieldViolations {
		if v.Field == field {
			return v, true
		}
	}
	return FieldViolation{}, false
}

// FromError converts err to *Error, decoding the status details. nil stays nil; an *Error is
// returned as is; an error that carries no gRPC status becomes Code Unknown (or DeadlineExceeded
// / Canceled for context errors). Details of unknown types are ignored.
func FromError(err error) error {
	if err == nil {
		return nil
	}
	var qe *Error
	if errors.As(err, &qe) {
		return qe
	}
	st, ok := status.FromError(err)
	if !ok {
		// Not a gRPC status: a context error maps to DeadlineExceeded or Canceled.
		st = status.FromContextError(err)
	}
	return Decode(st)
}

// Decode builds an *Error from a status and its details.
func Decode(st *status.Status) *Error {
	e := &Error{Code: st.Code(), Message: st.Message(), status: st}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			e.Reason, e.Domain, e.Metadata = d.GetReason(), d.GetDomain(), d.GetMetadata()
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				e.FieldViolations = append(e.FieldViolations, FieldViolation{
					Field: v.GetField(), Description: v.GetDescription(), Reason: v.GetReason(),
				})
			}
		case *errdetails.RetryInfo:
			e.RetryDelay = d.GetRetryDelay().AsDuration()
		case *routev1.FailureDetail:
			e.Attempts, e.Plan = d.GetAttempts(), d.GetPlan()
		}
	}
	return e
}
