"""The ``envoy-data-plane`` types the control plane uses, imported in one place.

envoy-data-plane 2.2.0's generated classes use a pydantic idiom that pydantic 2.12+
deprecates (``@model_validator(mode="after")`` on a classmethod): importing them warns
once per class. The warning is the library's and changes nothing at run time; it is
silenced here, around the import only, so that test runs that turn warnings into errors
can import the control plane.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    # Registers HttpProtocolOptions, which clusters carry packed in an Any.
    import envoy_data_plane.envoy.extensions.upstreams.http.v3  # noqa: F401
    from envoy_data_plane.envoy.config.cluster.v3 import Cluster, OutlierDetection
    from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment
    from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest, DiscoveryResponse
    from envoy_data_plane.google.protobuf import Any as AnyMessage
    from envoy_data_plane.google.rpc import Status

__all__ = [
    "AnyMessage",
    "Cluster",
    "ClusterLoadAssignment",
    "OutlierDetection",
    "DiscoveryRequest",
    "DiscoveryResponse",
    "Status",
]
