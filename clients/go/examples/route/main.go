// Command route sends one prompt to a Quorum server, prints the answer and its account, then
// streams the same prompt.
//
//	go run ./examples/route -addr 127.0.0.1:50051 "What is 2+2?"
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/quorum-router/quorum/clients/go/quorum"
)

func main() {
	addr := flag.String("addr", envOr("QUORUM_ADDRESS", "127.0.0.1:50051"), "server host:port")
	timeout := flag.Duration("timeout", 10*time.Second, "deadline of each call")
	flag.Parse()
	prompt := strings.Join(flag.Args(), " ")
	if prompt == "" {
		prompt = "What is 2+2?"
	}

	client, err := quorum.Dial(*addr)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	resp, err := client.Route(ctx, quorum.UserRequest(prompt))
	if err != nil {
		report(err)
		os.Exit(1)
	}
	fmt.Printf("%s (%s, %s, $%.6f, saved $%.6f vs %s)\n%s\n\n",
		resp.GetModel(), resp.GetStrategy(), resp.GetClassification().GetTask(), resp.GetCostUsd(),
		resp.GetBaselineCostUsd()-resp.GetCostUsd(), resp.GetBaselineModel(), resp.GetContent())

	ctx, cancel = context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	for event, err := range client.RouteStream(ctx, quorum.UserRequest(prompt)) {
		if err != nil {
			report(err)
			os.Exit(1)
		}
		switch {
		case event.GetAttemptStarted() != nil:
			fmt.Printf("[attempt %s]\n", event.GetAttemptStarted().GetModel())
		case event.GetChunk() != nil:
			fmt.Print(event.GetChunk().GetText())
		case event.GetFinal() != nil:
			fmt.Printf("\n[final: %s]\n", event.GetFinal().GetModel())
		case event.GetError() != nil:
			fmt.Printf("\n[error: %s %s]\n", event.GetError().GetReason(), event.GetError().GetMessage())
		}
	}
}

func report(err error) {
	var qe *quorum.Error
	if !errors.As(err, &qe) {
		log.Print(err)
		return
	}
	log.Print(qe) // code, reason, message and field violations
	if qe.RetryDelay > 0 {
		log.Printf("  retry after %s", qe.RetryDelay)
	}
	for _, a := range qe.Attempts {
		log.Printf("  attempt %s: %s %s", a.GetModel(), a.GetOutcome(), a.GetReason())
	}
}

func envOr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}
