"""The gRPC service layer: the only code that sees protobuf. Authentication, admission
and shedding in front; validation and conversion at the edge; one place where
domain errors become gRPC statuses."""
