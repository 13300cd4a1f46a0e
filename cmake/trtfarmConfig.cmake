# find_package(trtfarm) finds this file with this directory (or the repository root) in
# CMAKE_PREFIX_PATH, or with trtfarm_DIR naming this directory. It provides
# trtfarm_add_engines(); see TrtfarmEngines.cmake beside it.

include("${CMAKE_CURRENT_LIST_DIR}/TrtfarmEngines.cmake")

if(NOT TRTFARM_EXECUTABLE)
  set(trtfarm_FOUND FALSE)
  set(trtfarm_NOT_FOUND_MESSAGE
    "the `trtfarm` program is not on PATH; install it (cargo install --path client) or name "
    "it with -DTRTFARM_EXECUTABLE=/path/to/trtfarm")
endif()
