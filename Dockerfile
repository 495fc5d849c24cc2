# syntax=docker/dockerfile:1
# Build: compile the TypeScript sources.
FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# npm runs patch-package after install: it applies patches/ (postgres.js's pool queue) or fails.
COPY patches ./patches
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npx tsc -p tsconfig.build.json

# Production dependencies only.
FROM node:24-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY patches ./patches
RUN npm ci --omit=dev --no-audit --no-fund

# Run: compiled code, migrations and production dependencies, as a non-root user.
FROM node:24-slim
ENV NODE_ENV=production PORT=8080 HOST=0.0.0.0
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY sql ./sql
USER node
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/health/live').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# DATABASE_URL must be set in a container: the embedded PostgreSQL is a development dependency,
# not installed here (npm ci --omit=dev), so without it the service exits naming the setting.
# HOST=0.0.0.0 needs a credential (AUTH_TOKENS, AUTH_TOKENS_FILE or AUTH_JWKS_URL): without one the
# service refuses to start, naming the fix (README, "Security").
# A memory cap is the operator's: NODE_OPTIONS=--max-old-space-size=<MB> (README, "Memory").
CMD ["node", "dist/server.js"]
