# write_if_changed(PATH TEXT): writes TEXT to PATH only when it differs, so files
# generated at build time (migrations, dashboard assets) do not rebuild their dependants
# needlessly. Included by the generator scripts run with `cmake -P`.
function(write_if_changed path text)
  if(EXISTS "${path}")
    file(READ "${path}" old)
    if(old STREQUAL text)
      return()
    endif()
  endif()
  file(WRITE "${path}" "${text}")
endfunction()
