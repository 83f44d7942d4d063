# DPHIANT middleman image. Build: docker build -t dphiant .
# Stage 1 compiles TypeScript with the dev dependencies, then drops them.
FROM node:20-bookworm AS build
WORKDIR /app
COPY package.json package-lock.json ./
# better-sqlite3 is native: a prebuilt binary is fetched, or it compiles with the toolchain of this image
RUN npm ci
COPY . .
RUN npm run build && npm prune --omit=dev

# Stage 2: runtime only (same Debian release, so the native module built above loads).
FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    DPHIANT_DATA_DIR=/var/lib/dphiant
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
COPY --from=build /app/src/anonymize/data ./src/anonymize/data
COPY --from=build /app/src/dicom/data ./src/dicom/data
COPY --from=build /app/src/web/static ./src/web/static
COPY --from=build /app/orthanc ./orthanc
RUN mkdir -p /var/lib/dphiant && chown node:node /var/lib/dphiant
USER node
VOLUME ["/var/lib/dphiant"]
# DICOM SCP and web UI (informational; docker-compose.yml uses host networking)
EXPOSE 11112 8043
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.DPHIANT_WEB_PORT||8043)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
CMD ["node", "dist/src/cli/main.js", "serve"]
