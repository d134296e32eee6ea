/* The Vulkan loader at run time: dlopen("libvulkan.so.1"), a Vulkan 1.2
 * instance, and the instance and device function tables. */
#include <dlfcn.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "backend/vulkan/vkb_internal.h"
#include "util/error.h"

const char *vkb_result_name(VkResult r)
{
    switch (r) {
    case VK_SUCCESS: return "VK_SUCCESS";
    case VK_TIMEOUT: return "VK_TIMEOUT";
    case VK_ERROR_OUT_OF_HOST_MEMORY: return "VK_ERROR_OUT_OF_HOST_MEMORY";
    case VK_ERROR_OUT_OF_DEVICE_MEMORY: return "VK_ERROR_OUT_OF_DEVICE_MEMORY";
    case VK_ERROR_INITIALIZATION_FAILED: return "VK_ERROR_INITIALIZATION_FAILED";
    case VK_ERROR_DEVICE_LOST: return "VK_ERROR_DEVICE_LOST";
    case VK_ERROR_MEMORY_MAP_FAILED: return "VK_ERROR_MEMORY_MAP_FAILED";
    case VK_ERROR_EXTENSION_NOT_PRESENT: return "VK_ERROR_EXTENSION_NOT_PRESENT";
    case VK_ERROR_FEATURE_NOT_PRESENT: return "VK_ERROR_FEATURE_NOT_PRESENT";
    case VK_ERROR_INCOMPATIBLE_DRIVER: return "VK_ERROR_INCOMPATIBLE_DRIVER";
    case VK_ERROR_TOO_MANY_OBJECTS: return "VK_ERROR_TOO_MANY_OBJECTS";
    case VK_ERROR_INVALID_SHADER_NV: return "VK_ERROR_INVALID_SHADER_NV";
    default: return "VkResult error";
    }
}

/* One loader and one instance for the whole process, made on the first
 * vkb_open (again in a forked child) and never destroyed: drivers keep process-wide state that
 * unloading them leaks (Mesa's lavapipe allocates a one-time table that
 * becomes unreachable when the loader unloads it at vkDestroyInstance), and
 * an instance per open would cost milliseconds. */
static struct {
    vkb_fns f; /* instance-level part */
    VkInstance instance;
    strata_status status;
    strata_error err;
    pid_t pid; /* the process that made it (0: not yet): a forked child (detect's
                  isolated measurements) makes its own, the inherited one is
                  not usable there */
} proc;
static pthread_mutex_t proc_lock = PTHREAD_MUTEX_INITIALIZER;

static strata_status create_instance(strata_error *err)
{
    PFN_vkEnumerateInstanceVersion version_fn =
        (PFN_vkEnumerateInstanceVersion)proc.f.GetInstanceProcAddr(NULL, "vkEnumerateInstanceVersion");
    PFN_vkCreateInstance create = (PFN_vkCreateInstance)proc.f.GetInstanceProcAddr(NULL, "vkCreateInstance");
    uint32_t version = VK_API_VERSION_1_0;
    if (version_fn && version_fn(&version) != VK_SUCCESS) version = VK_API_VERSION_1_0;
    if (!create || version < VK_API_VERSION_1_1)
        return err_set(err, STRATA_E_UNSUPPORTED, "Vulkan: the loader supports only Vulkan 1.0 (1.2 is needed)");
    VkApplicationInfo app = {
        .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
        .pApplicationName = "strata",
        .pEngineName = "strata",
        .apiVersion = VK_API_VERSION_1_2,
    };
    VkInstanceCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app};
    VkResult r = create(&ci, NULL, &proc.instance);
    if (r != VK_SUCCESS) {
        proc.instance = VK_NULL_HANDLE;
        return err_set(err, STRATA_E_UNSUPPORTED, "Vulkan: vkCreateInstance failed (%s): no usable driver",
                       vkb_result_name(r));
    }
    return STRATA_OK;
}

static strata_status load_process(strata_error *err)
{
    void *lib = dlopen("libvulkan.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib)
        return err_set(err, STRATA_E_UNSUPPORTED,
                       "Vulkan: loader libvulkan.so.1 not found (Debian package libvulkan1)");
    /* dlsym returns void *; the loader's entry point is a function */
    void *gipa = dlsym(lib, "vkGetInstanceProcAddr");
    if (!gipa) return err_set(err, STRATA_E_UNSUPPORTED, "Vulkan: libvulkan.so.1 has no vkGetInstanceProcAddr");
    memcpy(&proc.f.GetInstanceProcAddr, &gipa, sizeof gipa);
    strata_status st = create_instance(err);
    if (st != STRATA_OK) return st;
#define VKB_LOAD_I(name)                                                                           \
    proc.f.name = (PFN_vk##name)proc.f.GetInstanceProcAddr(proc.instance, "vk" #name);             \
    if (!proc.f.name) return err_set(err, STRATA_E_UNSUPPORTED, "Vulkan: the loader lacks vk" #name);
    VKB_INSTANCE_FNS(VKB_LOAD_I)
#undef VKB_LOAD_I
    return STRATA_OK;
}

strata_status vkb_load_instance(vkb *v, strata_error *err)
{
    pthread_mutex_lock(&proc_lock);
    if (proc.pid != getpid()) {
        memset(&proc, 0, sizeof proc);
        proc.status = load_process(&proc.err);
        proc.pid = getpid();
    }
    pthread_mutex_unlock(&proc_lock);
    if (proc.status != STRATA_OK) return err_set(err, proc.status, "%s", proc.err.message);
    v->f = proc.f;
    v->instance = proc.instance;
    return STRATA_OK;
}

strata_status vkb_load_device_fns(vkb *v, strata_error *err)
{
#define VKB_LOAD_D(name)                                                                           \
    v->f.name = (PFN_vk##name)v->f.GetDeviceProcAddr(v->dev, "vk" #name);                          \
    if (!v->f.name) return err_set(err, STRATA_E_UNSUPPORTED, "Vulkan: the driver lacks vk" #name);
    VKB_DEVICE_FNS(VKB_LOAD_D)
#undef VKB_LOAD_D
    return STRATA_OK;
}

