# Embeds the dashboard's files as byte arrays (run at build time with -P):
#   cmake -DASSET_DIR=<dir> -DASSETS=index.html,app.js,style.css -DOUT=<file.c> -P embed_assets.cmake
# Each file becomes a `static const unsigned char[]` and one row of http_assets[] (assets.h),
# with its URL path "/<name>" and a Content-Type taken from its extension. No xxd needed:
# file(READ ... HEX) does the conversion.

function(asset_content_type name out)
  get_filename_component(ext "${name}" LAST_EXT)
  string(TOLOWER "${ext}" ext)
  if(ext STREQUAL ".html")
    set(type "text/html; charset=utf-8")
  elseif(ext STREQUAL ".js" OR ext STREQUAL ".mjs")
    set(type "text/javascript; charset=utf-8")
  elseif(ext STREQUAL ".css")
    set(type "text/css; charset=utf-8")
  elseif(ext STREQUAL ".svg")
    set(type "image/svg+xml")
  elseif(ext STREQUAL ".png")
    set(type "image/png")
  elseif(ext STREQUAL ".json")
    set(type "application/json")
  else()
    message(FATAL_ERROR "embed_assets: no content type known for ${name}")
  endif()
  set(${out} "${type}" PARENT_SCOPE)
endfunction()

# Appends to `out_var` a C array named `symbol` holding the bytes of `file`, 16 to a line.
function(asset_to_c_array file symbol out_var)
  file(READ "${file}" hex HEX)
  string(LENGTH "${hex}" hex_len)
  math(EXPR size "${hex_len} / 2")
  # "0a1b..." -> "0x0a,0x1b,...", then a line break after every 16 bytes.
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  # (CMake's regular expressions have no {n}: spell the 16 bytes out.)
  string(REPEAT "0x[0-9a-f][0-9a-f]," 16 line)
  string(REGEX REPLACE "(${line})" "\\1\n    " bytes "${bytes}")
  if(size EQUAL 0)
    set(bytes "0x00") # C forbids empty initialisers; len stays 0
  endif()
  set(${out_var} "${${out_var}}static const unsigned char ${symbol}[] = {\n    ${bytes}\n};\n\n"
      PARENT_SCOPE)
  set(${symbol}_size ${size} PARENT_SCOPE)
endfunction()

string(REPLACE "," ";" ASSETS "${ASSETS}")
set(arrays "")
set(rows "")
set(count 0)
foreach(name IN LISTS ASSETS)
  set(file "${ASSET_DIR}/${name}")
  if(NOT EXISTS "${file}")
    message(FATAL_ERROR "embed_assets: ${file} not found")
  endif()
  string(MAKE_C_IDENTIFIER "asset_${name}" symbol)
  asset_to_c_array("${file}" ${symbol} arrays)
  asset_content_type("${name}" type)
  string(APPEND rows "    {\"/${name}\", \"${type}\", ${symbol}, ${${symbol}_size}},\n")
  math(EXPR count "${count} + 1")
endforeach()

set(out "/* Generated from src/http/assets by embed_assets.cmake; do not edit. */\n")
string(APPEND out "#include \"http/assets/assets.h\"\n\n${arrays}")
string(APPEND out "const struct http_asset http_assets[] = {\n${rows}};\n")
string(APPEND out "const size_t http_assets_count = ${count};\n")
include(${CMAKE_CURRENT_LIST_DIR}/../../../cmake/write_if_changed.cmake)
write_if_changed("${OUT}" "${out}")
