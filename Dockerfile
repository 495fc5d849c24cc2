# syntax=docker/dockerfile:1
# Build: install production dependencies (tsx runs the TypeScript sources, as `npm start` does).
FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

# Run: sources and dependencies only, as a non-root user.
FROM node:20-bookworm-slim
ENV NODE_ENV=production PORT=8080 HOST=0.0.0.0
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json tsconfig.json ./
COPY src ./src
COPY sql ./sql
USER node
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/health/live').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# DATABASE_URL must be set in a container: the embedded PostgreSQL default is for local runs.
CMD ["node", "--import", "tsx", "src/server.ts"]
