# Sourced by nginx's auto/make after ../config: adds the cargo rule to objs/Makefile.
ngx_phantom_make
