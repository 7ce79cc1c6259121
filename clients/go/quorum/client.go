// Package quorum is a thin helper over the generated RouteService stubs (package routev1):
// it dials a Quorum server, applies a default deadline to every call that has none, and turns
// error statuses into *Error, which exposes the rich details the server attaches
// (google.rpc.ErrorInfo, BadRequest, RetryInfo and quorum.route.v1.FailureDetail).
//
// The stubs stay fully usable: Client.RouteService is the generated client.
package quorum

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	routev1 "github.com/quorum-router/quorum/clients/go/gen/quorum/route/v1"
)

// Default deadlines applied when the caller's context has none.
const (
	DefaultTimeout       = 30 * time.Second
	DefaultStreamTimeout = 2 * time.Minute
)

// Client calls a Quorum server. It is safe for concurrent use; Close it when done.
type Client struct {
	conn *grpc.ClientConn
	// RouteService is the generated client, for calls the helper does not wrap.
	RouteService routev1.RouteServiceClient
	// Timeout bounds unary calls whose context has no deadline.
	Timeout time.Duration
	// StreamTimeout bounds streams whose context has no deadline.
	StreamTimeout time.Duration
}

type options struct {
	dial          []grpc.DialOption
	timeout       time.Duration
	streamTimeout time.Duration
}

// Option configures Dial.
type Option func(*options)

// WithDialOptions adds gRPC dial options, e.g. transport credentials for TLS. Without
// credentials among them, Dial uses plaintext (insecure) transport.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dial = append(o.dial, opts...) }
}

// WithTimeout sets the default deadline of unary calls (DefaultTimeout otherwise).
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithStreamTimeout sets the default deadline of streams (DefaultStreamTimeout otherwise).
func WithStreamTimeout(d time.Duration) Option { return func(o *options) { o.streamTimeout = d } }

// Dial creates a client for the server at addr ("host:port"). The connection is made lazily,
// on the first call.
func Dial(addr string, opts ...Option) (*Client, error) {
	o := options{timeout: DefaultTimeout, streamTimeout: DefaultStreamTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	dial := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, o.dial...)
	conn, err := grpc.NewClient(addr, dial...)
	if err != nil {
		return nil, fmt.Errorf("quorum: dial %s: %w", addr, err)
	}
	return &Client{
		conn:          conn,
		RouteService:  routev1.NewRouteServiceClient(conn),
		Timeout:       o.timeout,
		StreamTimeout: o.streamTimeout,
	}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Conn returns the underlying connection, e.g. for the health service.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

func withDefault(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok || d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// Route classifies, plans and executes req. Errors are *Error.
func (c *Client) Route(ctx context.Context, req *routev1.RouteRequest, opts ...grpc.CallOption) (*routev1.RouteResponse, error) {
	ctx, cancel := withDefault(ctx, c.Timeout)
	defer cancel()
	resp, err := c.RouteService.Route(ctx, req, opts...)
	return resp, FromError(err)
}

// Plan returns what Route would do for req, without calling any model. Errors are *Error.
func (c *Client) Plan(ctx context.Context, req *routev1.RouteRequest, opts ...grpc.CallOption) (*routev1.PlanResponse, error) {
	ctx, cancel := withDefault(ctx, c.Timeout)
	defer cancel()
	resp, err := c.RouteService.Plan(ctx, &routev1.PlanRequest{Request: req}, opts...)
	return resp, FromError(err)
}

// ListModels lists the configured models; tier "" lists all. Errors are *Error.
func (c *Client) ListModels(ctx context.Context, tier string, opts ...grpc.CallOption) (*routev1.ListModelsResponse, error) {
	ctx, cancel := withDefault(ctx, c.Timeout)
	defer cancel()
	resp, err := c.RouteService.ListModels(ctx, &routev1.ListModelsRequest{Tier: tier}, opts...)
	return resp, FromError(err)
}

// Feedback records the outcome of an earlier request. Errors are *Error.
func (c *Client) Feedback(ctx context.Context, req *routev1.FeedbackRequest, opts ...grpc.CallOption) (*routev1.FeedbackResponse, error) {
	ctx, cancel := withDefault(ctx, c.Timeout)
	defer cancel()
	resp, err := c.RouteService.Feedback(ctx, req, opts...)
	return resp, FromError(err)
}

// RouteStream routes req and yields its events in order: the plan first, then attempts, chunks,
// gate verdicts, escalations, votes and fallbacks, and last either the final account
// (event.GetFinal()) or an error event (event.GetError()). A failed call or a broken stream
// yields one (nil, *Error) pair and stops. Breaking out of the loop cancels the call.
//
//	for event, err := range client.RouteStream(ctx, req) {
//		if err != nil { ... }
//		fmt.Print(event.GetChunk().GetText())
//	}
func (c *Client) RouteStream(ctx context.Context, req *routev1.RouteRequest, opts ...grpc.CallOption) iter.Seq2[*routev1.RouteStreamResponse, error] {
	return func(yield func(*routev1.RouteStreamResponse, error) bool) {
		ctx, cancel := withDefault(ctx, c.StreamTimeout)
		defer cancel()
		stream, err := c.RouteService.RouteStream(ctx, &routev1.RouteStreamRequest{Request: req}, opts...)
		if err != nil {
			yield(nil, FromError(err))
			return
		}
		for {
			event, err := stream.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					yield(nil, FromError(err))
				}
				return
			}
			if !yield(event, nil) {
				return
			}
		}
	}
}

// UserRequest builds a request holding one user message.
func UserRequest(text string) *routev1.RouteRequest {
	return &routev1.RouteRequest{Messages: []*routev1.Message{{Role: routev1.Role_ROLE_USER, Content: text}}}
}
