# TrtfarmEngines: TensorRT engines as build outputs of a CMake project, built by trtfarm.
#
#   include(TrtfarmEngines)          # with this directory in CMAKE_MODULE_PATH, or
#   find_package(trtfarm REQUIRED)   # with this directory in CMAKE_PREFIX_PATH (or trtfarm_DIR)
#
#   trtfarm_add_engines(<target> MANIFEST <engine.toml>
#                       [ENGINES <name>...] [OUTPUT_DIR <dir>] [JOB_POOL <pool>]
#                       [SUBMIT_ARGS <arg>...] [ALL])
#
# Adds one custom command, `trtfarm submit <manifest> --out <OUTPUT_DIR> --depfile ...`, whose
# outputs are the engine files <OUTPUT_DIR>/<engine>.engine, and a custom target <target> that
# depends on them (built by default with ALL; otherwise `add_dependencies(app <target>)`).
# The command runs again only when the manifest, its model, external-data files or plugins
# change (the dependency file `trtfarm submit --depfile` writes), and an engine file is
# rewritten only when its bytes change, so steps that consume an unchanged engine stay up to
# date.
#
#   MANIFEST     the engine.toml, relative to CMAKE_CURRENT_SOURCE_DIR. Its engine.lock is
#                written beside it, as `trtfarm submit` always does.
#   ENGINES      the engines to build. Default: every engine of the manifest, listed at
#                configure time with `trtfarm check --json` (which reads the manifest and the
#                model's input declarations; adding an engine to the manifest re-runs CMake).
#                Name them when the model does not exist at configure time.
#   OUTPUT_DIR   where the engine files go (default ${CMAKE_CURRENT_BINARY_DIR}/<target>). The
#                manifest's own `output` paths are not used: build outputs stay in the build
#                tree.
#   JOB_POOL     the Ninja job pool the command runs in (default `trtfarm`, of
#                TRTFARM_JOB_POOL_SIZE commands), so `ninja -j64` does not start 64 submits at
#                once. Other generators ignore job pools.
#   SUBMIT_ARGS  more arguments for `trtfarm submit`, e.g. `--locked` in CI or `--priority 5`.
#   ALL          build the engines with the default target.
#
# Sets, in the caller's scope:
#   <target>_ENGINE_FILES    every engine file, in ENGINES order
#   <target>_<name>_ENGINE   each engine's file; <name> is the engine's name with `.` and `-`
#                            turned into `_` (engine `fp16-sm89` of target `detector`:
#                            detector_fp16_sm89_ENGINE)
# and the properties TRTFARM_ENGINE_FILES and TRTFARM_MANIFEST on <target>, for other
# directories (`get_target_property(files detector TRTFARM_ENGINE_FILES)`).
#
# Variables read:
#   TRTFARM_EXECUTABLE       the trtfarm program (default: found on PATH with find_program)
#   TRTFARM_JOB_POOL_SIZE    size of the `trtfarm` job pool (default 2)
# The build reaches the daemon as `trtfarm` does anywhere: the local daemon (started on
# demand) or TRTFARM_DAEMON / TRTFARM_TOKEN_FILE from the environment the build runs in.
#
# Needs CMake 3.20 (DEPFILE with the Makefile generators) and works with the Ninja and Unix
# Makefiles generators. With Ninja, a command that ran but changed no engine (a comment edited
# in the manifest, a model touched) is not run again; Make has no such "restat" and runs that
# command (a cache hit, nothing rewritten) at every build until an engine changes.

include_guard(GLOBAL)

if(CMAKE_VERSION VERSION_LESS 3.20)
  message(FATAL_ERROR
    "TrtfarmEngines needs CMake 3.20 or newer (add_custom_command DEPFILE for every "
    "generator); this is CMake ${CMAKE_VERSION}. Install a newer CMake (pip install cmake).")
endif()

if(NOT TRTFARM_EXECUTABLE)
  find_program(TRTFARM_EXECUTABLE NAMES trtfarm
    DOC "The trtfarm client that builds TensorRT engines (trtfarm_add_engines)")
endif()

set(TRTFARM_JOB_POOL_SIZE 2 CACHE STRING
  "How many `trtfarm submit` commands a Ninja build runs at once (the `trtfarm` job pool)")

# The function is defined under these policies and keeps them wherever it is called, whatever
# the caller's cmake_minimum_required: CMP0116 NEW is what makes CMake rewrite the absolute
# paths of the dependency file for the Ninja generator.
cmake_policy(PUSH)
cmake_policy(VERSION 3.20...3.31)

function(trtfarm_add_engines target)
  cmake_parse_arguments(PARSE_ARGV 1 arg
    "ALL" "MANIFEST;OUTPUT_DIR;JOB_POOL" "ENGINES;SUBMIT_ARGS")
  if(arg_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR
      "trtfarm_add_engines(${target}): unknown arguments ${arg_UNPARSED_ARGUMENTS}; it takes "
      "MANIFEST, ENGINES, OUTPUT_DIR, JOB_POOL, SUBMIT_ARGS and ALL")
  endif()
  if(NOT arg_MANIFEST)
    message(FATAL_ERROR
      "trtfarm_add_engines(${target}): MANIFEST is required, e.g. "
      "trtfarm_add_engines(${target} MANIFEST models/detector/engine.toml)")
  endif()
  if(NOT TRTFARM_EXECUTABLE)
    message(FATAL_ERROR
      "trtfarm_add_engines(${target}): no `trtfarm` program on PATH; install it "
      "(cargo install --path client) or name it with -DTRTFARM_EXECUTABLE=/path/to/trtfarm")
  endif()

  # The real path: `trtfarm submit` runs in the manifest's directory and names the manifest
  # relative to it (for --out's layout) only if the two agree, symbolic links resolved.
  file(REAL_PATH "${arg_MANIFEST}" manifest BASE_DIRECTORY "${CMAKE_CURRENT_SOURCE_DIR}")
  if(NOT EXISTS "${manifest}" OR IS_DIRECTORY "${manifest}")
    message(FATAL_ERROR
      "trtfarm_add_engines(${target}): MANIFEST ${arg_MANIFEST} is not a file "
      "(looked for ${manifest}); name the engine.toml itself")
  endif()
  get_filename_component(manifest_dir "${manifest}" DIRECTORY)

  set(engines ${arg_ENGINES})
  if(NOT engines)
    _trtfarm_list_engines("${target}" "${manifest}" engines)
    # A new or renamed engine changes the outputs: configure again when the manifest changes.
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${manifest}")
  endif()

  if(arg_OUTPUT_DIR)
    get_filename_component(output_dir "${arg_OUTPUT_DIR}" ABSOLUTE
      BASE_DIR "${CMAKE_CURRENT_BINARY_DIR}")
  else()
    set(output_dir "${CMAKE_CURRENT_BINARY_DIR}/${target}")
  endif()

  set(files "")
  set(engine_flags "")
  foreach(engine IN LISTS engines)
    # `submit --out DIR` writes DIR/<manifest dir relative to its working directory>/<engine>
    # .engine; it runs in the manifest's directory, so that is DIR/<engine>.engine.
    set(file "${output_dir}/${engine}.engine")
    list(APPEND files "${file}")
    list(APPEND engine_flags --engine "${engine}")
    string(REGEX REPLACE "[.-]" "_" id "${engine}")
    set(${target}_${id}_ENGINE "${file}" PARENT_SCOPE)
  endforeach()
  set(${target}_ENGINE_FILES "${files}" PARENT_SCOPE)

  if(arg_JOB_POOL)
    set(pool "${arg_JOB_POOL}")
  else()
    set(pool trtfarm)
    get_property(pools GLOBAL PROPERTY JOB_POOLS)
    if(NOT pools MATCHES "(^|;)trtfarm=")
      set_property(GLOBAL APPEND PROPERTY JOB_POOLS "trtfarm=${TRTFARM_JOB_POOL_SIZE}")
    endif()
  endif()

  set(depfile "${CMAKE_CURRENT_BINARY_DIR}/CMakeFiles/${target}.trtfarm.d")
  string(JOIN ", " engine_list ${engines})
  add_custom_command(
    OUTPUT ${files}
    COMMAND "${TRTFARM_EXECUTABLE}" submit "${manifest}"
            --out "${output_dir}" --depfile "${depfile}" ${engine_flags} ${arg_SUBMIT_ARGS}
    DEPENDS "${manifest}"
    DEPFILE "${depfile}"
    WORKING_DIRECTORY "${manifest_dir}"
    JOB_POOL "${pool}"
    COMMENT "trtfarm: ${target}: engines ${engine_list} of ${arg_MANIFEST}"
    VERBATIM)

  set(all "")
  if(arg_ALL)
    set(all ALL)
  endif()
  add_custom_target(${target} ${all} DEPENDS ${files})
  set_target_properties(${target} PROPERTIES
    TRTFARM_ENGINE_FILES "${files}"
    TRTFARM_MANIFEST "${manifest}")
endfunction()

# The names of every engine of `manifest`, from `trtfarm check --json`; a manifest that does
# not check stops the configuration with trtfarm's diagnostics.
function(_trtfarm_list_engines target manifest out_var)
  execute_process(
    COMMAND "${TRTFARM_EXECUTABLE}" check --json "${manifest}"
    OUTPUT_VARIABLE json
    ERROR_VARIABLE stderr
    RESULT_VARIABLE status)
  string(JSON ok ERROR_VARIABLE json_error GET "${json}" ok)
  if(json_error)
    message(FATAL_ERROR
      "trtfarm_add_engines(${target}): `${TRTFARM_EXECUTABLE} check --json ${manifest}` "
      "failed (${status}) without a report: ${stderr}")
  endif()
  if(NOT ok)
    # The same diagnostics, as a person reads them.
    execute_process(COMMAND "${TRTFARM_EXECUTABLE}" check "${manifest}"
      OUTPUT_VARIABLE report ERROR_VARIABLE report)
    message(FATAL_ERROR
      "trtfarm_add_engines(${target}): ${manifest} does not check, so its engines cannot be "
      "listed (or name them with ENGINES):\n${report}")
  endif()
  string(JSON count LENGTH "${json}" manifests 0 engines)
  set(names "")
  if(count GREATER 0)
    math(EXPR last "${count} - 1")
    foreach(i RANGE ${last})
      string(JSON name GET "${json}" manifests 0 engines ${i} name)
      list(APPEND names "${name}")
    endforeach()
  endif()
  set(${out_var} "${names}" PARENT_SCOPE)
endfunction()

cmake_policy(POP)
