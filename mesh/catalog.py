"""The gateway's catalog: server reflection over every chatmesh contract.

Each service reflects only itself; the gateway routes ``grpc.reflection.*`` here so
that ``grpcurl -plaintext 127.0.0.1:8080 list`` shows the whole mesh, and grpcurl can
describe and call any service through the gateway.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from mesh.contracts import load_all
from services.runtime.server import ServiceServer, create_server, run
from services.runtime.settings import ServiceSettings


class CatalogSettings(ServiceSettings):
    """Catalog settings (env prefix CHATMESH_CATALOG_)."""

    model_config = SettingsConfigDict(env_prefix="CHATMESH_CATALOG_")

    port: int = Field(50050, ge=0, le=65535, description="gRPC port; 0 picks a free one (tests).")


async def build(settings: CatalogSettings) -> ServiceServer:
    """A server with health and reflection listing every chatmesh service."""
    return create_server("catalog", settings, [], reflection_names=[c.full_name for c in load_all()])


if __name__ == "__main__":
    run("catalog", CatalogSettings, build)
