# lxml links libxml2 and libxslt, which it finds through xml2-config/xslt-config.
mod_apk="libxml2-dev libxslt-dev"
# Those config scripts print the build root's paths, not a cross target's: build on the
# target until the cross stage rewrites them.
mod_cross=no
