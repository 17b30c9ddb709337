"""The Envoy gateway: typed settings, the rendered Envoy bootstrap, and Envoy as a dependency.

Browsers reach the mesh through Envoy with gRPC-web over HTTP/1.1, SDKs and grpcurl with
gRPC over h2c; Envoy routes each call by its gRPC path prefix to the service that owns the
package. Nothing here is a hand-kept YAML file: :func:`gateway.render.render` builds the
bootstrap from :class:`gateway.settings.GatewaySettings` and a list of
:class:`gateway.routes.RouteSpec`.
"""
