# Multi-stage build: the module is compiled against the exact nginx version of the final image.
# Every RUN step is a script in scripts/docker/, exercised on CI by scripts/docker/test-image-recipe.sh.
#
#   docker build --build-arg NGINX_VERSION=1.28.0 -t nginx-phantom-token .
#   docker run -p 8080:8080 -v $PWD/my.conf:/etc/nginx/nginx.conf:ro nginx-phantom-token
ARG NGINX_VERSION=1.28.0

FROM rust:1-bookworm AS build
ARG NGINX_VERSION
WORKDIR /src
COPY scripts/docker/ scripts/docker/
RUN scripts/docker/install-build-deps.sh
RUN scripts/docker/fetch-nginx-source.sh "${NGINX_VERSION}" /build/nginx
RUN scripts/docker/configure-nginx.sh /build/nginx
COPY Cargo.toml Cargo.lock build.rs ./
COPY src/ src/
COPY crates/ crates/
RUN scripts/docker/build-module.sh /build/nginx /out

FROM nginx:${NGINX_VERSION}
COPY --from=build /out/ngx_http_phantom_token_module.so /usr/lib/nginx/modules/
COPY nginx-conf/docker.conf /etc/nginx/nginx.conf
