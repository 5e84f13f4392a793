# syntax=docker/dockerfile:1
FROM golang:1.26-bookworm AS build
# Build with the image's Go: go.mod's go line must not fetch another toolchain.
ENV GOTOOLCHAIN=local
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/pollbox .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/pollbox /pollbox
USER nonroot:nonroot
# Every interface: inside a container, loopback reaches nobody. The
# embedded Redis still hands its dev tokens to loopback clients only.
ENV POLLBOX_ADDR=:8080
EXPOSE 8080
# distroless has no shell or curl: pollbox checks its own /readyz.
HEALTHCHECK --interval=10s --timeout=6s --start-period=5s --retries=3 CMD ["/pollbox", "healthcheck"]
ENTRYPOINT ["/pollbox"]
