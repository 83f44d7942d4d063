# DPHIANT middleman image: the product only. Build: docker build -t dphiant .
# Stage 1 compiles everything with the dev dependencies, then drops them; the dev tooling (tools/: the dev-stack
# launcher and the synthetic data generator), tests, benchmarks, scripts and the dev Orthanc configurations
# (orthanc/) are compiled or copied here but never reach stage 2, which takes dist/src and the product's data.
FROM node:24-bookworm AS build
WORKDIR /app
COPY package.json package-lock.json ./
# better-sqlite3 is native: a prebuilt binary is fetched, or it compiles with the toolchain of this image
RUN npm ci
COPY . .
RUN npm run build && npm prune --omit=dev

# Stage 2: runtime only (same Debian release, so the native module built above loads). Without configuration it
# refuses to start (devStack is off: no demo credentials, no created keys): give it the PACS password, the keys
# and the web users (README, Configuration), or run the demo with docker-compose.yml, which sets the dev stack.
FROM node:24-bookworm-slim
ENV NODE_ENV=production \
    DPHIANT_DATA_DIR=/var/lib/dphiant
# tesseract-ocr (and its English data, a dependency) reads burned-in text in US and SC pixels; no other extras
RUN apt-get update \
 && apt-get install -y --no-install-recommends tesseract-ocr \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
COPY --from=build /app/src/anonymize/data ./src/anonymize/data
COPY --from=build /app/src/crosswalk/data ./src/crosswalk/data
COPY --from=build /app/src/dicom/data ./src/dicom/data
COPY --from=build /app/src/web/static ./src/web/static
RUN mkdir -p /var/lib/dphiant && chown node:node /var/lib/dphiant && chmod 700 /var/lib/dphiant
USER node
VOLUME ["/var/lib/dphiant"]
# DICOM SCP and web UI (informational; docker-compose.yml uses host networking)
EXPOSE 11112 8043
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.DPHIANT_WEB_PORT||8043)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
CMD ["node", "--initial-old-space-size=256", "dist/src/cli/main.js", "serve"]
