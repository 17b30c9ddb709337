"""``python -m mesh.xds``: the xDS control plane (settings: CHATMESH_XDS_*)."""

from mesh.xds.server import run

run()
