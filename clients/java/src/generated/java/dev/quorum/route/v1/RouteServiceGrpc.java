package dev.quorum.route.v1;

import static io.grpc.MethodDescriptor.generateFullMethodName;

/**
 * <pre>
 * RouteService decides which model or models answer an LLM request, and how, then runs it.
 * </pre>
 */
@io.grpc.stub.annotations.GrpcGenerated
public final class RouteServiceGrpc {

  private RouteServiceGrpc() {}

  public static final java.lang.String SERVICE_NAME = "quorum.route.v1.RouteService";

  // Static method descriptors that strictly reflect the proto.
  private static volatile io.grpc.MethodDescriptor<dev.quorum.route.v1.RouteRequest,
      dev.quorum.route.v1.RouteResponse> getRouteMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "Route",
      requestType = dev.quorum.route.v1.RouteRequest.class,
      responseType = dev.quorum.route.v1.RouteResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<dev.quorum.route.v1.RouteRequest,
      dev.quorum.route.v1.RouteResponse> getRouteMethod() {
    io.grpc.MethodDescriptor<dev.quorum.route.v1.RouteRequest, dev.quorum.route.v1.RouteResponse> getRouteMethod;
    if ((getRouteMethod = RouteServiceGrpc.getRouteMethod) == null) {
      synchronized (RouteServiceGrpc.class) {
        if ((getRouteMethod = RouteServiceGrpc.getRouteMethod) == null) {
          RouteServiceGrpc.getRouteMethod = getRouteMethod =
              io.grpc.MethodDescriptor.<dev.quorum.route.v1.RouteRequest, dev.quorum.route.v1.RouteResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "Route"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.quorum.route.v1.RouteRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.quorum.route.v1.RouteResponse.getDefaultInstance()))
              .setSchemaDescriptor(new RouteServiceMethodDescriptorSupplier("Route"))
              .build();
        }
      }
    }
    return getRouteMethod;
  }

  private static volatile io.grpc.MethodDescriptor<dev.quorum.route.v1.RouteStreamRequest,
      dev.quorum.route.v1.RouteStreamResponse> getRouteStreamMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "RouteStream",
      requestType = dev.quorum.route.v1.RouteStreamRequest.class,
      responseType = dev.quorum.route.v1.RouteStreamResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.SERVER_STREAMING)
  public static io.grpc.MethodDescriptor<dev.quorum.route.v1.RouteStreamRequest,
      dev.quorum.route.v1.RouteStreamResponse> getRouteStreamMethod() {
    io.grpc.MethodDescriptor<dev.quorum.route.v1.RouteStreamRequest, dev.quorum.route.v1.RouteStreamResponse> getRouteStreamMethod;
    if ((getRouteStreamMethod = RouteServiceGrpc.getRouteStreamMethod) == null) {
      synchronized (RouteServiceGrpc.class) {
        if ((getRouteStreamMethod = RouteServiceGrpc.getRouteStreamMethod) == null) {
          RouteServiceGrpc.getRouteStreamMethod = getRouteStreamMethod =
              io.grpc.MethodDescriptor.<dev.quorum.route.v1.RouteStreamRequest, dev.quorum.route.v1.RouteStreamResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.SERVER_STREAMING)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "RouteStream"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.quorum.route.v1.RouteStreamRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.quorum.route.v1.RouteStreamResponse.getDefaultInstance()))
              .setSchemaDescriptor(new RouteServiceMethodDescriptorSupplier("RouteStream"))
              .build();
        }
      }
    }
    return getRouteStreamMethod;
  }

  private static volatile io.grpc.MethodDescriptor<dev.quorum.route.v1.PlanRequest,
      dev.quorum.route.v1.PlanResponse> getPlanMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "Plan",
      requestType = dev.quorum.route.v1.PlanRequest.class,
      responseType = dev.quorum.route.v1.PlanResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<dev.quorum.route.v1.PlanRequest,
      dev.quorum.route.v1.PlanResponse> getPlanMethod() {
    io.grpc.MethodDescriptor<dev.quorum.route.v1.PlanRequest, dev.quorum.route.v1.PlanResponse> getPlanMethod;
    if ((getPlanMethod = RouteServiceGrpc.getPlanMethod) == null) {
      synchronized (RouteServiceGrpc.class) {
        if ((getPlanMethod = RouteServiceGrpc.getPlanMethod) == null) {
          RouteServiceGrpc.getPlanMethod = getPlanMethod =
              io.grpc.MethodDescriptor.<dev.quorum.route.v1.PlanRequest, dev.quorum.route.v1.PlanResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "Plan"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.quorum.route.v1.PlanRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.quorum.route.v1.PlanResponse.getDefaultInstance()))
              .setSchemaDescriptor(new RouteServiceMethodDescriptorSupplier("Plan"))
              .build();
        }
      }
    }
    return getPlanMethod;
  }

  private static volatile io.grpc.MethodDescriptor<dev.quorum.route.v1.ListModelsRequest,
      dev.quorum.route.v1.ListModelsResponse> getListModelsMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "ListModels",
      requestType = dev.quorum.route.v1.ListModelsRequest.class,
      responseType = dev.quorum.route.v1.ListModelsResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<dev.quorum.route.v1.ListModelsRequest,
      dev.quorum.route.v1.ListModelsResponse> getListModelsMethod() {
    io.grpc.MethodDescriptor<dev.quorum.route.v1.ListModelsRequest, dev.quorum.route.v1.ListModelsResponse> getListModelsMethod;
    if ((getListModelsMethod = RouteServiceGrpc.getListModelsMethod) == null) {
      synchronized (RouteServiceGrpc.class) {
        if ((getListModelsMethod = RouteServiceGrpc.getListModelsMethod) == null) {
          RouteServiceGrpc.getListModelsMethod = getListModelsMethod =
              io.grpc.MethodDescriptor.<dev.quorum.route.v1.ListModelsRequest, dev.quorum.route.v1.ListModelsResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "ListModels"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.quorum.route.v1.ListModelsRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.quorum.route.v1.ListModelsResponse.getDefaultInstance()))
              .setSchemaDescriptor(new RouteServiceMethodDescriptorSupplier("ListModels"))
              .build();
        }
      }
    }
    return getListModelsMethod;
  }

  private static volatile io.grpc.MethodDescriptor<dev.quorum.route.v1.FeedbackRequest,
      dev.quorum.route.v1.FeedbackResponse> getFeedbackMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "Feedback",
      requestType = dev.quorum.route.v1.FeedbackRequest.class,
      responseType = dev.quorum.route.v1.FeedbackResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<dev.quorum.route.v1.FeedbackRequest,
      dev.quorum.route.v1.FeedbackResponse> getFeedbackMethod() {
    io.grpc.MethodDescriptor<dev.quorum.route.v1.FeedbackRequest, dev.quorum.route.v1.FeedbackResponse> getFeedbackMethod;
    if ((getFeedbackMethod = RouteServiceGrpc.getFeedbackMethod) == null) {
      synchronized (RouteServiceGrpc.class) {
        if ((getFeedbackMethod = RouteServiceGrpc.getFeedbackMethod) == null) {
          RouteServiceGrpc.getFeedbackMethod = getFeedbackMethod =
              io.grpc.MethodDescriptor.<dev.quorum.route.v1.FeedbackRequest, dev.quorum.route.v1.FeedbackResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "Feedback"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.quorum.route.v1.FeedbackRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.quorum.route.v1.FeedbackResponse.getDefaultInstance()))
              .setSchemaDescriptor(new RouteServiceMethodDescriptorSupplier("Feedback"))
              .build();
        }
      }
    }
    return getFeedbackMethod;
  }

  /**
   * Creates a new async stub that supports all call types for the service
   */
  public static RouteServiceStub newStub(io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<RouteServiceStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<RouteServiceStub>() {
        @java.lang.Override
        public RouteServiceStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new RouteServiceStub(channel, callOptions);
        }
      };
    return RouteServiceStub.newStub(factory, channel);
  }

  /**
   * Creates a new blocking-style stub that supports all types of calls on the service
   */
  public static RouteServiceBlockingV2Stub newBlockingV2Stub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<RouteServiceBlockingV2Stub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<RouteServiceBlockingV2Stub>() {
        @java.lang.Override
        public RouteServiceBlockingV2Stub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new RouteServiceBlockingV2Stub(channel, callOptions);
        }
      };
    return RouteServiceBlockingV2Stub.newStub(factory, channel);
  }

  /**
   * Creates a new blocking-style stub that supports unary and streaming output calls on the service
   */
  public static RouteServiceBlockingStub newBlockingStub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<RouteServiceBlockingStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<RouteServiceBlockingStub>() {
        @java.lang.Override
        public RouteServiceBlockingStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new RouteServiceBlockingStub(channel, callOptions);
        }
      };
    return RouteServiceBlockingStub.newStub(factory, channel);
  }

  /**
   * Creates a new ListenableFuture-style stub that supports unary calls on the service
   */
  public static RouteServiceFutureStub newFutureStub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<RouteServiceFutureStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<RouteServiceFutureStub>() {
        @java.lang.Override
        public RouteServiceFutureStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new RouteServiceFutureStub(channel, callOptions);
        }
      };
    return RouteServiceFutureStub.newStub(factory, channel);
  }

  /**
   * <pre>
   * RouteService decides which model or models answer an LLM request, and how, then runs it.
   * </pre>
   */
  public interface AsyncService {

    /**
     * <pre>
     * Classify, plan and execute a request; returns the answer and the full account.
     * </pre>
     */
    default void route(dev.quorum.route.v1.RouteRequest request,
        io.grpc.stub.StreamObserver<dev.quorum.route.v1.RouteResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getRouteMethod(), responseObserver);
    }

    /**
     * <pre>
     * Like Route, but streams typed events: the plan, attempts, text chunks, gate verdicts,
     * escalations, votes, fallbacks, and the final account.
     * </pre>
     */
    default void routeStream(dev.quorum.route.v1.RouteStreamRequest request,
        io.grpc.stub.StreamObserver<dev.quorum.route.v1.RouteStreamResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getRouteStreamMethod(), responseObserver);
    }

    /**
     * <pre>
     * Classify and plan a request without calling any model: what would happen and why.
     * </pre>
     */
    default void plan(dev.quorum.route.v1.PlanRequest request,
        io.grpc.stub.StreamObserver<dev.quorum.route.v1.PlanResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getPlanMethod(), responseObserver);
    }

    /**
     * <pre>
     * List the configured models with prices, tiers, capabilities and breaker states.
     * </pre>
     */
    default void listModels(dev.quorum.route.v1.ListModelsRequest request,
        io.grpc.stub.StreamObserver<dev.quorum.route.v1.ListModelsResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getListModelsMethod(), responseObserver);
    }

    /**
     * <pre>
     * Record the outcome of an earlier request (regenerated, thumbs up/down, a score, a label).
     * With authentication on, only the tenant that made the request may judge it (for any
     * other it is NOT_FOUND); only the first verdict on a request teaches the planner. When
     * the shared decision index cannot be read, the answer is RESOURCE_EXHAUSTED with reason
     * DECISION_STORE_UNAVAILABLE and a RetryInfo: the decision may exist, so retry.
     * </pre>
     */
    default void feedback(dev.quorum.route.v1.FeedbackRequest request,
        io.grpc.stub.StreamObserver<dev.quorum.route.v1.FeedbackResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getFeedbackMethod(), responseObserver);
    }
  }

  /**
   * Base class for the server implementation of the service RouteService.
   * <pre>
   * RouteService decides which model or models answer an LLM request, and how, then runs it.
   * </pre>
   */
  public static abstract class RouteServiceImplBase
      implements io.grpc.BindableService, AsyncService {

    @java.lang.Override public final io.grpc.ServerServiceDefinition bindService() {
      return RouteServiceGrpc.bindService(this);
    }
  }

  /**
   * A stub to allow clients to do asynchronous rpc calls to service RouteService.
   * <pre>
   * RouteService decides which model or models answer an LLM request, and how, then runs it.
   * </pre>
   */
  public static final class RouteServiceStub
      extends io.grpc.stub.AbstractAsyncStub<RouteServiceStub> {
    private RouteServiceStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected RouteServiceStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new RouteServiceStub(channel, callOptions);
    }

    /**
     * <pre>
     * Classify, plan and execute a request; returns the answer and the full account.
     * </pre>
     */
    public void route(dev.quorum.route.v1.RouteRequest request,
        io.grpc.stub.StreamObserver<dev.quorum.route.v1.RouteResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getRouteMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Like Route, but streams typed events: the plan, attempts, text chunks, gate verdicts,
     * escalations, votes, fallbacks, and the final account.
     * </pre>
     */
    public void routeStream(dev.quorum.route.v1.RouteStreamRequest request,
        io.grpc.stub.StreamObserver<dev.quorum.route.v1.RouteStreamResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncServerStreamingCall(
          getChannel().newCall(getRouteStreamMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Classify and plan a request without calling any model: what would happen and why.
     * </pre>
     */
    public void plan(dev.quorum.route.v1.PlanRequest request,
        io.grpc.stub.StreamObserver<dev.quorum.route.v1.PlanResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getPlanMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * List the configured models with prices, tiers, capabilities and breaker states.
     * </pre>
     */
    public void listModels(dev.quorum.route.v1.ListModelsRequest request,
        io.grpc.stub.StreamObserver<dev.quorum.route.v1.ListModelsResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getListModelsMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Record the outcome of an earlier request (regenerated, thumbs up/down, a score, a label).
     * With authentication on, only the tenant that made the request may judge it (for any
     * other it is NOT_FOUND); only the first verdict on a request teaches the planner. When
     * the shared decision index cannot be read, the answer is RESOURCE_EXHAUSTED with reason
     * DECISION_STORE_UNAVAILABLE and a RetryInfo: the decision may exist, so retry.
     * </pre>
     */
    public void feedback(dev.quorum.route.v1.FeedbackRequest request,
        io.grpc.stub.StreamObserver<dev.quorum.route.v1.FeedbackResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getFeedbackMethod(), getCallOptions()), request, responseObserver);
    }
  }

  /**
   * A stub to allow clients to do synchronous rpc calls to service RouteService.
   * <pre>
   * RouteService decides which model or models answer an LLM request, and how, then runs it.
   * </pre>
   */
  public static final class RouteServiceBlockingV2Stub
      extends io.grpc.stub.AbstractBlockingStub<RouteServiceBlockingV2Stub> {
    private RouteServiceBlockingV2Stub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected RouteServiceBlockingV2Stub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new RouteServiceBlockingV2Stub(channel, callOptions);
    }

    /**
     * <pre>
     * Classify, plan and execute a request; returns the answer and the full account.
     * </pre>
     */
    public dev.quorum.route.v1.RouteResponse route(dev.quorum.route.v1.RouteRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getRouteMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Like Route, but streams typed events: the plan, attempts, text chunks, gate verdicts,
     * escalations, votes, fallbacks, and the final account.
     * </pre>
     */
    @io.grpc.ExperimentalApi("https://github.com/grpc/grpc-java/issues/10918")
    public io.grpc.stub.BlockingClientCall<?, dev.quorum.route.v1.RouteStreamResponse>
        routeStream(dev.quorum.route.v1.RouteStreamRequest request) {
      return io.grpc.stub.ClientCalls.blockingV2ServerStreamingCall(
          getChannel(), getRouteStreamMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Classify and plan a request without calling any model: what would happen and why.
     * </pre>
     */
    public dev.quorum.route.v1.PlanResponse plan(dev.quorum.route.v1.PlanRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getPlanMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * List the configured models with prices, tiers, capabilities and breaker states.
     * </pre>
     */
    public dev.quorum.route.v1.ListModelsResponse listModels(dev.quorum.route.v1.ListModelsRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getListModelsMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Record the outcome of an earlier request (regenerated, thumbs up/down, a score, a label).
     * With authentication on, only the tenant that made the request may judge it (for any
     * other it is NOT_FOUND); only the first verdict on a request teaches the planner. When
     * the shared decision index cannot be read, the answer is RESOURCE_EXHAUSTED with reason
     * DECISION_STORE_UNAVAILABLE and a RetryInfo: the decision may exist, so retry.
     * </pre>
     */
    public dev.quorum.route.v1.FeedbackResponse feedback(dev.quorum.route.v1.FeedbackRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getFeedbackMethod(), getCallOptions(), request);
    }
  }

  /**
   * A stub to allow clients to do limited synchronous rpc calls to service RouteService.
   * <pre>
   * RouteService decides which model or models answer an LLM request, and how, then runs it.
   * </pre>
   */
  public static final class RouteServiceBlockingStub
      extends io.grpc.stub.AbstractBlockingStub<RouteServiceBlockingStub> {
    private RouteServiceBlockingStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected RouteServiceBlockingStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new RouteServiceBlockingStub(channel, callOptions);
    }

    /**
     * <pre>
     * Classify, plan and execute a request; returns the answer and the full account.
     * </pre>
     */
    public dev.quorum.route.v1.RouteResponse route(dev.quorum.route.v1.RouteRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getRouteMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Like Route, but streams typed events: the plan, attempts, text chunks, gate verdicts,
     * escalations, votes, fallbacks, and the final account.
     * </pre>
     */
    public java.util.Iterator<dev.quorum.route.v1.RouteStreamResponse> routeStream(
        dev.quorum.route.v1.RouteStreamRequest request) {
      return io.grpc.stub.ClientCalls.blockingServerStreamingCall(
          getChannel(), getRouteStreamMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Classify and plan a request without calling any model: what would happen and why.
     * </pre>
     */
    public dev.quorum.route.v1.PlanResponse plan(dev.quorum.route.v1.PlanRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getPlanMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * List the configured models with prices, tiers, capabilities and breaker states.
     * </pre>
     */
    public dev.quorum.route.v1.ListModelsResponse listModels(dev.quorum.route.v1.ListModelsRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getListModelsMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Record the outcome of an earlier request (regenerated, thumbs up/down, a score, a label).
     * With authentication on, only the tenant that made the request may judge it (for any
     * other it is NOT_FOUND); only the first verdict on a request teaches the planner. When
     * the shared decision index cannot be read, the answer is RESOURCE_EXHAUSTED with reason
     * DECISION_STORE_UNAVAILABLE and a RetryInfo: the decision may exist, so retry.
     * </pre>
     */
    public dev.quorum.route.v1.FeedbackResponse feedback(dev.quorum.route.v1.FeedbackRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getFeedbackMethod(), getCallOptions(), request);
    }
  }

  /**
   * A stub to allow clients to do ListenableFuture-style rpc calls to service RouteService.
   * <pre>
   * RouteService decides which model or models answer an LLM request, and how, then runs it.
   * </pre>
   */
  public static final class RouteServiceFutureStub
      extends io.grpc.stub.AbstractFutureStub<RouteServiceFutureStub> {
    private RouteServiceFutureStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected RouteServiceFutureStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new RouteServiceFutureStub(channel, callOptions);
    }

    /**
     * <pre>
     * Classify, plan and execute a request; returns the answer and the full account.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<dev.quorum.route.v1.RouteResponse> route(
        dev.quorum.route.v1.RouteRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getRouteMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * Classify and plan a request without calling any model: what would happen and why.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<dev.quorum.route.v1.PlanResponse> plan(
        dev.quorum.route.v1.PlanRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getPlanMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * List the configured models with prices, tiers, capabilities and breaker states.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<dev.quorum.route.v1.ListModelsResponse> listModels(
        dev.quorum.route.v1.ListModelsRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getListModelsMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * Record the outcome of an earlier request (regenerated, thumbs up/down, a score, a label).
     * With authentication on, only the tenant that made the request may judge it (for any
     * other it is NOT_FOUND); only the first verdict on a request teaches the planner. When
     * the shared decision index cannot be read, the answer is RESOURCE_EXHAUSTED with reason
     * DECISION_STORE_UNAVAILABLE and a RetryInfo: the decision may exist, so retry.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<dev.quorum.route.v1.FeedbackResponse> feedback(
        dev.quorum.route.v1.FeedbackRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getFeedbackMethod(), getCallOptions()), request);
    }
  }

  private static final int METHODID_ROUTE = 0;
  private static final int METHODID_ROUTE_STREAM = 1;
  private static final int METHODID_PLAN = 2;
  private static final int METHODID_LIST_MODELS = 3;
  private static final int METHODID_FEEDBACK = 4;

  private static final class MethodHandlers<Req, Resp> implements
      io.grpc.stub.ServerCalls.UnaryMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.ServerStreamingMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.ClientStreamingMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.BidiStreamingMethod<Req, Resp> {
    private final AsyncService serviceImpl;
    private final int methodId;

    MethodHandlers(AsyncService serviceImpl, int methodId) {
      this.serviceImpl = serviceImpl;
      this.methodId = methodId;
    }

    @java.lang.Override
    @java.lang.SuppressWarnings("unchecked")
    public void invoke(Req request, io.grpc.stub.StreamObserver<Resp> responseObserver) {
      switch (methodId) {
        case METHODID_ROUTE:
          serviceImpl.route((dev.quorum.route.v1.RouteRequest) request,
              (io.grpc.stub.StreamObserver<dev.quorum.route.v1.RouteResponse>) responseObserver);
          break;
        case METHODID_ROUTE_STREAM:
          serviceImpl.routeStream((dev.quorum.route.v1.RouteStreamRequest) request,
              (io.grpc.stub.StreamObserver<dev.quorum.route.v1.RouteStreamResponse>) responseObserver);
          break;
        case METHODID_PLAN:
          serviceImpl.plan((dev.quorum.route.v1.PlanRequest) request,
              (io.grpc.stub.StreamObserver<dev.quorum.route.v1.PlanResponse>) responseObserver);
          break;
        case METHODID_LIST_MODELS:
          serviceImpl.listModels((dev.quorum.route.v1.ListModelsRequest) request,
              (io.grpc.stub.StreamObserver<dev.quorum.route.v1.ListModelsResponse>) responseObserver);
          break;
        case METHODID_FEEDBACK:
          serviceImpl.feedback((dev.quorum.route.v1.FeedbackRequest) request,
              (io.grpc.stub.StreamObserver<dev.quorum.route.v1.FeedbackResponse>) responseObserver);
          break;
        default:
          throw new AssertionError();
      }
    }

    @java.lang.Override
    @java.lang.SuppressWarnings("unchecked")
    public io.grpc.stub.StreamObserver<Req> invoke(
        io.grpc.stub.StreamObserver<Resp> responseObserver) {
      switch (methodId) {
        default:
          throw new AssertionError();
      }
    }
  }

  public static final io.grpc.ServerServiceDefinition bindService(AsyncService service) {
    return io.grpc.ServerServiceDefinition.builder(getServiceDescriptor())
        .addMethod(
          getRouteMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              dev.quorum.route.v1.RouteRequest,
              dev.quorum.route.v1.RouteResponse>(
                service, METHODID_ROUTE)))
        .addMethod(
          getRouteStreamMethod(),
          io.grpc.stub.ServerCalls.asyncServerStreamingCall(
            new MethodHandlers<
              dev.quorum.route.v1.RouteStreamRequest,
              dev.quorum.route.v1.RouteStreamResponse>(
                service, METHODID_ROUTE_STREAM)))
        .addMethod(
          getPlanMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              dev.quorum.route.v1.PlanRequest,
              dev.quorum.route.v1.PlanResponse>(
                service, METHODID_PLAN)))
        .addMethod(
          getListModelsMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              dev.quorum.route.v1.ListModelsRequest,
              dev.quorum.route.v1.ListModelsResponse>(
                service, METHODID_LIST_MODELS)))
        .addMethod(
          getFeedbackMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              dev.quorum.route.v1.FeedbackRequest,
              dev.quorum.route.v1.FeedbackResponse>(
                service, METHODID_FEEDBACK)))
        .build();
  }

  private static abstract class RouteServiceBaseDescriptorSupplier
      implements io.grpc.protobuf.ProtoFileDescriptorSupplier, io.grpc.protobuf.ProtoServiceDescriptorSupplier {
    RouteServiceBaseDescriptorSupplier() {}

    @java.lang.Override
    public com.google.protobuf.Descriptors.FileDescriptor getFileDescriptor() {
      return dev.quorum.route.v1.RouteServiceProto.getDescriptor();
    }

    @java.lang.Override
    public com.google.protobuf.Descriptors.ServiceDescriptor getServiceDescriptor() {
      return getFileDescriptor().findServiceByName("RouteService");
    }
  }

  private static final class RouteServiceFileDescriptorSupplier
      extends RouteServiceBaseDescriptorSupplier {
    RouteServiceFileDescriptorSupplier() {}
  }

  private static final class RouteServiceMethodDescriptorSupplier
      extends RouteServiceBaseDescriptorSupplier
      implements io.grpc.protobuf.ProtoMethodDescriptorSupplier {
    private final java.lang.String methodName;

    RouteServiceMethodDescriptorSupplier(java.lang.String methodName) {
      this.methodName = methodName;
    }

    @java.lang.Override
    public com.google.protobuf.Descriptors.MethodDescriptor getMethodDescriptor() {
      return getServiceDescriptor().findMethodByName(methodName);
    }
  }

  private static volatile io.grpc.ServiceDescriptor serviceDescriptor;

  public static io.grpc.ServiceDescriptor getServiceDescriptor() {
    io.grpc.ServiceDescriptor result = serviceDescriptor;
    if (result == null) {
      synchronized (RouteServiceGrpc.class) {
        result = serviceDescriptor;
        if (result == null) {
          serviceDescriptor = result = io.grpc.ServiceDescriptor.newBuilder(SERVICE_NAME)
              .setSchemaDescriptor(new RouteServiceFileDescriptorSupplier())
              .addMethod(getRouteMethod())
              .addMethod(getRouteStreamMethod())
              .addMethod(getPlanMethod())
              .addMethod(getListModelsMethod())
              .addMethod(getFeedbackMethod())
              .build();
        }
      }
    }
    return result;
  }
}
