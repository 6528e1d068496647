# Finds the LibTorch calmkit builds against and defines the target calmkit::torch.
#
# Where: Torch_DIR (CMake variable), else CALMKIT_TORCH_DIR or Torch_DIR (environment), else the torch inside the
# project's virtual environment (.venv, made by scripts/setup.sh: PyPI's torch==2.11.0). The path may be the folder
# holding TorchConfig.cmake or a LibTorch root holding share/cmake/Torch. A path that holds neither is an error
# naming it: nothing falls back silently to another LibTorch.
#
# Why not find_package(Torch) alone: PyPI's torch is a CUDA build, and its Caffe2Config.cmake then requires a CUDA
# toolkit (nvcc, headers) although calmkit compiles no .cu file. For a LibTorch laid out as <root>/{include,lib}
# (PyPI's wheel, the libtorch zip) the headers and libraries are linked directly, as torch.utils.cpp_extension does;
# any other layout (a distribution's package) goes through find_package(Torch), which works for CPU builds.
#
# Results: calmkit::torch (INTERFACE: headers, libtorch, libtorch_cpu, libc10), calmkit::torch_cuda (INTERFACE: the
# CUDA libraries kept in DT_NEEDED, for the source builds; the prebuilt addon leaves them out and the loader opens them
# where they exist, so the one prebuild also loads beside a CPU-only torch), CALMKIT_TORCH_VERSION,
# CALMKIT_TORCH_CONFIG_DIR, CALMKIT_WITH_CUDA, CALMKIT_TORCH_LIBDIR (for the rpath). No CUDA header is needed: device
# facts come from the driver, loaded by name, and calmkit calls no symbol of libtorch_cuda (it reaches CUDA through
# ATen's hooks, which libtorch_cuda registers when it loads).

function(_calmkit_torch_config_dir candidate out)
  set(found "")
  if(EXISTS "${candidate}/TorchConfig.cmake" OR EXISTS "${candidate}/torch-config.cmake")
    set(found "${candidate}")
  elseif(EXISTS "${candidate}/share/cmake/Torch/TorchConfig.cmake")
    set(found "${candidate}/share/cmake/Torch")
  endif()
  set(${out} "${found}" PARENT_SCOPE)
endfunction()

set(_calmkit_torch_request "")
set(_calmkit_torch_from "")
if(Torch_DIR)
  set(_calmkit_torch_request "${Torch_DIR}")
  set(_calmkit_torch_from "Torch_DIR")
elseif(DEFINED ENV{CALMKIT_TORCH_DIR} AND NOT "$ENV{CALMKIT_TORCH_DIR}" STREQUAL "")
  set(_calmkit_torch_request "$ENV{CALMKIT_TORCH_DIR}")
  set(_calmkit_torch_from "CALMKIT_TORCH_DIR")
elseif(DEFINED ENV{Torch_DIR} AND NOT "$ENV{Torch_DIR}" STREQUAL "")
  set(_calmkit_torch_request "$ENV{Torch_DIR}")
  set(_calmkit_torch_from "Torch_DIR (environment)")
endif()

if(_calmkit_torch_request)
  get_filename_component(_calmkit_torch_request "${_calmkit_torch_request}" ABSOLUTE)
  _calmkit_torch_config_dir("${_calmkit_torch_request}" CALMKIT_TORCH_CONFIG_DIR)
  if(NOT CALMKIT_TORCH_CONFIG_DIR)
    message(FATAL_ERROR "calmkit: ${_calmkit_torch_from} is '${_calmkit_torch_request}', which holds no LibTorch "
      "(no TorchConfig.cmake there or under share/cmake/Torch). Point it at <torch>/share/cmake/Torch, e.g. "
      "$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')/Torch, or unset it to use the project's .venv.")
  endif()
else()
  file(GLOB _calmkit_venv_torch "${CMAKE_CURRENT_SOURCE_DIR}/.venv/lib/python3*/site-packages/torch/share/cmake/Torch")
  list(LENGTH _calmkit_venv_torch _n)
  if(_n EQUAL 0)
    message(FATAL_ERROR "calmkit: no LibTorch found. Set CALMKIT_TORCH_DIR to a folder holding TorchConfig.cmake "
      "(for a Python with torch: $(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')/Torch). An installed "
      "calmkit's install step finds one itself (node scripts/install.js --check says where it looks); in calmkit's own "
      "checkout, `bash scripts/setup.sh` installs PyPI's torch==2.11.0 into ${CMAKE_CURRENT_SOURCE_DIR}/.venv.")
  endif()
  list(GET _calmkit_venv_torch 0 CALMKIT_TORCH_CONFIG_DIR)
  set(_calmkit_torch_from ".venv")
endif()

# Version from TorchConfigVersion.cmake (both layouts ship it).
set(CALMKIT_TORCH_VERSION "unknown")
if(EXISTS "${CALMKIT_TORCH_CONFIG_DIR}/TorchConfigVersion.cmake")
  file(STRINGS "${CALMKIT_TORCH_CONFIG_DIR}/TorchConfigVersion.cmake" _v REGEX "set\\(PACKAGE_VERSION \"[^\"]+\"\\)")
  string(REGEX REPLACE ".*PACKAGE_VERSION \"([^\"]+)\".*" "\\1" CALMKIT_TORCH_VERSION "${_v}")
endif()

get_filename_component(_calmkit_torch_root "${CALMKIT_TORCH_CONFIG_DIR}/../../.." ABSOLUTE)
set(CALMKIT_WITH_CUDA OFF)
add_library(calmkit_torch INTERFACE)
add_library(calmkit::torch ALIAS calmkit_torch)
add_library(calmkit_torch_cuda INTERFACE)
add_library(calmkit::torch_cuda ALIAS calmkit_torch_cuda)

if(EXISTS "${_calmkit_torch_root}/lib/libtorch_cpu.so" AND EXISTS "${_calmkit_torch_root}/include/torch/csrc/api/include")
  set(CALMKIT_TORCH_LIBDIR "${_calmkit_torch_root}/lib")
  set(_paths "")
  foreach(_l IN ITEMS torch torch_cpu c10)
    list(APPEND _paths "${CALMKIT_TORCH_LIBDIR}/lib${_l}.so")
  endforeach()
  target_include_directories(calmkit_torch SYSTEM INTERFACE
    "${_calmkit_torch_root}/include" "${_calmkit_torch_root}/include/torch/csrc/api/include")
  target_link_libraries(calmkit_torch INTERFACE ${_paths})
  if(EXISTS "${CALMKIT_TORCH_LIBDIR}/libtorch_cuda.so")
    set(CALMKIT_WITH_CUDA ON)
    # --no-as-needed: libtorch_cuda has no symbol calmkit names, but loading it is what registers the CUDA kernels
    # and hooks; the linker would otherwise drop it and the build would never see a GPU.
    target_link_libraries(calmkit_torch_cuda INTERFACE
      "-Wl,--no-as-needed" "${CALMKIT_TORCH_LIBDIR}/libtorch_cuda.so" "${CALMKIT_TORCH_LIBDIR}/libc10_cuda.so")
  endif()
else()
  # Another layout (e.g. Debian's libtorch-dev): its own config, which handles CPU builds.
  find_package(Torch REQUIRED PATHS "${CALMKIT_TORCH_CONFIG_DIR}" NO_DEFAULT_PATH)
  target_link_libraries(calmkit_torch INTERFACE ${TORCH_LIBRARIES})
  if(TARGET torch_cuda OR TORCH_CUDA_LIBRARIES)
    set(CALMKIT_WITH_CUDA ON)
  endif()
  if(Torch_VERSION)
    set(CALMKIT_TORCH_VERSION "${Torch_VERSION}")
  endif()
  set(CALMKIT_TORCH_LIBDIR "")
endif()

message(STATUS "calmkit: LibTorch ${CALMKIT_TORCH_VERSION} from ${_calmkit_torch_from} (${CALMKIT_TORCH_CONFIG_DIR}), "
  "CUDA: ${CALMKIT_WITH_CUDA}")
