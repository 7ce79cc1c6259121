package dev.quorum.client;

/**
 * One {@code google.rpc.BadRequest} field violation.
 *
 * @param field path of the bad field, e.g. {@code messages} or {@code hints.max_cost_usd}
 * @param description what is wrong
 * @param reason machine-readable reason, empty when the server sets none
 */
public record FieldViolation(String field, String description, String reason) {}
