// The browser client, built into dist/ and served by the mesh at the gateway's address
// (mesh/static_site.py behind Envoy's catch-all route), so gRPC-web calls are same-origin.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const sdk = fileURLToPath(new URL("../gen/ts", import.meta.url));

export default defineConfig({
  resolve: {
    // The generated code lives outside web/: its imports of @bufbuild/protobuf must resolve
    // to web/node_modules (one copy), not to a node_modules next to gen/ts.
    alias: [{ find: /^@chatmesh\/sdk\//, replacement: `${sdk}/` }],
    dedupe: ["@bufbuild/protobuf"],
  },
  // JSX is Preact's (automatic runtime), as tsconfig.json says for the type check.
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  server: {
    fs: { allow: [".", sdk] },
  },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: true,
    target: "es2022",
  },
});
