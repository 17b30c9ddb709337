"""The mesh's xDS control plane: Envoy's service clusters and endpoints, live.

``python -m mesh.xds`` serves Envoy's Aggregated Discovery Service (ADS, state of the
world) over gRPC: one EDS cluster per service (CDS), with the same HTTP/2, health checks,
circuit breakers and retry budget as the gateway's static clusters, and each cluster's
endpoints (EDS) from a source of live replicas:

- ``registry`` (local runs): the ``REGISTRY`` JetStream KV bucket every replica writes
  with a TTL (:mod:`services.runtime.registry`);
- ``kubernetes``: the EndpointSlices of the namespace, through the Kubernetes API
  (:mod:`mesh.xds.kubernetes`).

Any change of the live set is pushed to every connected Envoy within a second (within
milliseconds in practice). Envoy keeps its last configuration while the control plane is
away and picks up again once it is back; the routes stay rendered by :mod:`gateway.render`.

Modules: ``settings`` (CHATMESH_XDS_*), ``resources`` (the typed Envoy resources from the
replicas), ``ads`` (the ADS stream protocol), ``kubernetes`` (EndpointSlices to replicas),
``server`` (building and running it), ``probe`` (reading Envoy's admin ``/clusters``:
which hosts it has, and when a new one got its first request).
"""
