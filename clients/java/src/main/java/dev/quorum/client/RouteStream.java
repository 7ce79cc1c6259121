package dev.quorum.client;

import dev.quorum.route.v1.RouteStreamResponse;
import io.grpc.Context;
import java.util.Iterator;
import java.util.NoSuchElementException;

/**
 * The events of one RouteStream call, in order: the plan first, then attempts, chunks, gate
 * verdicts, escalations, votes and fallbacks, and last either {@code final} or {@code error}.
 * Iterating blocks for the next event; a failed call or broken stream throws
 * {@link QuorumException}. Close it (try-with-resources) to cancel a call not read to the end.
 */
public final class RouteStream implements Iterator<RouteStreamResponse>, Iterable<RouteStreamResponse>, AutoCloseable {
  private final Context.CancellableContext context;
  private final Iterator<RouteStreamResponse> events;

  RouteStream(Context.CancellableContext context, Iterator<RouteStreamResponse> events) {
    this.context = context;
    this.events = events;
  }

  @Override
  public boolean hasNext() {
    try {
      boolean more = events.hasNext();
      if (!more) {
        context.cancel(null);
      }
      return more;
    } catch (RuntimeException e) {
      context.cancel(null);
      throw QuorumException.from(e);
    }
  }

  @Override
  public RouteStreamResponse next() {
    if (!hasNext()) {
      throw new NoSuchElementException("the stream has ended");
    }
    try {
      return events.next();
    } catch (RuntimeException e) {
      context.cancel(null);
      throw QuorumException.from(e);
    }
  }

  /** Returns this stream, for use in a for-each loop (once). */
  @Override
  public Iterator<RouteStreamResponse> iterator() {
    return this;
  }

  /** Cancels the call if it is still running. */
  @Override
  public void close() {
    context.cancel(null);
  }
}
