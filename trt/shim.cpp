//go:build tensorrt

// TensorRT behind the C API of shim.h. Supported: TensorRT 8.5 (JetPack
// 5.1), 8.6 (JetPack 6.0) and 10.x, chosen at compile time from
// NvInferVersion.h. Every entry point catches all exceptions; TensorRT
// objects are released with delete (destroy() is gone in 10.x).

#include "shim.h"

#include <NvInfer.h>
#include <NvOnnxParser.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#define CLIPD_TRT_AT_LEAST(major, minor)                                                                               \
    (NV_TENSORRT_MAJOR > (major) || (NV_TENSORRT_MAJOR == (major) && NV_TENSORRT_MINOR >= (minor)))

#if !CLIPD_TRT_AT_LEAST(8, 5)
#error "clipd needs TensorRT 8.5 or newer: it uses name-based I/O and enqueueV3"
#endif

using namespace nvinfer1;

namespace
{

struct Failure : std::runtime_error
{
    using std::runtime_error::runtime_error;
};

void copyText(char* buf, size_t len, const std::string& text)
{
    if (buf == nullptr || len == 0)
    {
        return;
    }
    size_t n = std::min(len - 1, text.size());
    std::memcpy(buf, text.data(), n);
    buf[n] = '\0';
}

void checkCuda(cudaError_t status, const char* what)
{
    if (status != cudaSuccess)
    {
        throw Failure(std::string(what) + ": " + cudaGetErrorString(status));
    }
}

clipd_trt_severity mapSeverity(ILogger::Severity s)
{
    switch (s)
    {
    case ILogger::Severity::kINTERNAL_ERROR: return CLIPD_TRT_SEV_INTERNAL_ERROR;
    case ILogger::Severity::kERROR: return CLIPD_TRT_SEV_ERROR;
    case ILogger::Severity::kWARNING: return CLIPD_TRT_SEV_WARNING;
    case ILogger::Severity::kINFO: return CLIPD_TRT_SEV_INFO;
    default: return CLIPD_TRT_SEV_VERBOSE;
    }
}

clipd_trt_dtype mapType(DataType t)
{
    switch (t)
    {
    case DataType::kFLOAT: return CLIPD_TRT_DTYPE_FLOAT;
    case DataType::kHALF: return CLIPD_TRT_DTYPE_HALF;
    case DataType::kINT8: return CLIPD_TRT_DTYPE_INT8;
    case DataType::kINT32: return CLIPD_TRT_DTYPE_INT32;
    case DataType::kBOOL: return CLIPD_TRT_DTYPE_BOOL;
    case DataType::kUINT8: return CLIPD_TRT_DTYPE_UINT8;
#if NV_TENSORRT_MAJOR >= 10
    case DataType::kINT64: return CLIPD_TRT_DTYPE_INT64;
    case DataType::kBF16: return CLIPD_TRT_DTYPE_BF16;
#endif
    default: return CLIPD_TRT_DTYPE_OTHER;
    }
}

size_t typeSize(clipd_trt_dtype t)
{
    switch (t)
    {
    case CLIPD_TRT_DTYPE_FLOAT:
    case CLIPD_TRT_DTYPE_INT32: return 4;
    case CLIPD_TRT_DTYPE_HALF:
    case CLIPD_TRT_DTYPE_BF16: return 2;
    case CLIPD_TRT_DTYPE_INT64: return 8;
    case CLIPD_TRT_DTYPE_INT8:
    case CLIPD_TRT_DTYPE_BOOL:
    case CLIPD_TRT_DTYPE_UINT8: return 1;
    default: return 0;
    }
}

const char* typeName(clipd_trt_dtype t)
{
    switch (t)
    {
    case CLIPD_TRT_DTYPE_FLOAT: return "float32";
    case CLIPD_TRT_DTYPE_HALF: return "float16";
    case CLIPD_TRT_DTYPE_INT8: return "int8";
    case CLIPD_TRT_DTYPE_INT32: return "int32";
    case CLIPD_TRT_DTYPE_INT64: return "int64";
    case CLIPD_TRT_DTYPE_BOOL: return "bool";
    case CLIPD_TRT_DTYPE_UINT8: return "uint8";
    case CLIPD_TRT_DTYPE_BF16: return "bfloat16";
    default: return "unsupported type";
    }
}

// IEEE half conversions, round to nearest even; used when an engine keeps
// FP16 I/O tensors, so the shim needs no cuda_fp16.h.
uint16_t floatToHalf(float f)
{
    uint32_t x;
    std::memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t exp = (x >> 23) & 0xffu;
    uint32_t man = x & 0x7fffffu;
    if (exp == 0xffu)
    {
        return static_cast<uint16_t>(sign | 0x7c00u | (man ? 0x200u : 0));
    }
    int32_t e = static_cast<int32_t>(exp) - 127 + 15;
    if (e >= 0x1f)
    {
        return static_cast<uint16_t>(sign | 0x7c00u);
    }
    if (e <= 0)
    {
        if (e < -10)
        {
            return static_cast<uint16_t>(sign);
        }
        man |= 0x800000u;
        uint32_t shift = static_cast<uint32_t>(14 - e);
        uint32_t half = man >> shift;
        uint32_t rest = man & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rest > mid || (rest == mid && (half & 1u)))
        {
            half++;
        }
        return static_cast<uint16_t>(sign | half);
    }
    uint32_t half = (static_cast<uint32_t>(e) << 10) | (man >> 13);
    uint32_t rest = man & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1u)))
    {
        half++; // may carry into the exponent, which is the right result
    }
    return static_cast<uint16_t>(sign | half);
}

float halfToFloat(uint16_t h)
{
    uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t x;
    if (exp == 0)
    {
        if (man == 0)
        {
            x = sign;
        }
        else
        {
            int32_t e = -1;
            do
            {
                e++;
                man <<= 1;
            } while ((man & 0x400u) == 0);
            x = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    }
    else if (exp == 0x1f)
    {
        x = sign | 0x7f800000u | (man << 13);
    }
    else
    {
        x = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    std::memcpy(&f, &x, 4);
    return f;
}

} // namespace

// The logger of one build or engine. TensorRT may call log() from its own
// threads, and Go drains the queue from another goroutine, hence the mutex.
struct clipd_trt_log : public ILogger
{
    static constexpr size_t kMaxQueued = 4096;

    explicit clipd_trt_log(clipd_trt_severity min)
        : minSeverity(min)
    {
    }

    void log(Severity severity, AsciiChar const* msg) noexcept override
    {
        try
        {
            clipd_trt_severity s = mapSeverity(severity);
            std::lock_guard<std::mutex> lock(mu);
            if (s <= CLIPD_TRT_SEV_ERROR)
            {
                lastError = msg;
            }
            if (s > minSeverity)
            {
                return;
            }
            if (queue.size() >= kMaxQueued)
            {
                queue.pop_front();
            }
            queue.emplace_back(s, msg);
        }
        catch (...)
        {
            // Losing a log line is better than terminating inside TensorRT.
        }
    }

    std::string lastErrorText()
    {
        std::lock_guard<std::mutex> lock(mu);
        return lastError.empty() ? std::string("no error message from TensorRT") : lastError;
    }

    std::mutex mu;
    std::deque<std::pair<clipd_trt_severity, std::string>> queue;
    std::string lastError;
    clipd_trt_severity minSeverity;
};

struct clipd_trt_build
{
    std::string error;
    std::vector<uint8_t> plan;
    std::vector<uint8_t> timingCache;
    int32_t fp16 = 0;
    int32_t fp32Layers = 0;
    int32_t layernorms = 0;
};

namespace
{

// Producer and consumer maps of a parsed network, for the LayerNorm search.
struct Graph
{
    explicit Graph(INetworkDefinition& network)
    {
        for (int32_t i = 0; i < network.getNbLayers(); i++)
        {
            ILayer* layer = network.getLayer(i);
            for (int32_t j = 0; j < layer->getNbOutputs(); j++)
            {
                producer[layer->getOutput(j)] = layer;
            }
        }
    }

    ILayer* producerOf(ITensor* t) const
    {
        auto it = producer.find(t);
        return it == producer.end() ? nullptr : it->second;
    }

    // Looks through layers that only move or re-type a tensor (the Cast and
    // Unsqueeze/Reshape nodes exporters put around LayerNorm).
    ITensor* source(ITensor* t) const
    {
        for (int depth = 0; t != nullptr && depth < 8; depth++)
        {
            ILayer* l = producerOf(t);
            if (l == nullptr || !isPassive(l) || l->getNbInputs() < 1)
            {
                break;
            }
            t = l->getInput(0);
        }
        return t;
    }

    static bool isPassive(ILayer* l)
    {
        switch (l->getType())
        {
        case LayerType::kIDENTITY:
        case LayerType::kSHUFFLE:
#if CLIPD_TRT_AT_LEAST(8, 6)
        case LayerType::kCAST:
#endif
            return true;
        default: return false;
        }
    }

    std::map<ITensor*, ILayer*> producer;
};

bool isElementWise(ILayer* l, ElementWiseOperation op)
{
    return l != nullptr && l->getType() == LayerType::kELEMENTWISE
        && static_cast<IElementWiseLayer*>(l)->getOperation() == op;
}

bool isReduceMean(ILayer* l)
{
    return l != nullptr && l->getType() == LayerType::kREDUCE
        && static_cast<IReduceLayer*>(l)->getOperation() == ReduceOperation::kAVG;
}

// Collects the layers that compute the denominator of one LayerNorm, from
// the centred tensor x back through Pow/Mul, ReduceMean, Add(eps) and Sqrt.
// Returns false when the subgraph contains anything else or never reaches x.
bool collectDenominator(const Graph& g, ITensor* t, ITensor* x, int depth, std::set<ILayer*>& out, bool& reachedX,
    bool& sawSqrt, bool& sawMean)
{
    if (t == x)
    {
        reachedX = true;
        return true;
    }
    ILayer* l = g.producerOf(t);
    if (l == nullptr || depth > 12)
    {
        return false;
    }
    switch (l->getType())
    {
    case LayerType::kCONSTANT: return true; // eps, the exponent 2
    case LayerType::kUNARY:
        if (static_cast<IUnaryLayer*>(l)->getOperation() != UnaryOperation::kSQRT)
        {
            return false;
        }
        sawSqrt = true;
        break;
    case LayerType::kREDUCE:
        if (!isReduceMean(l))
        {
            return false;
        }
        sawMean = true;
        break;
    case LayerType::kELEMENTWISE:
    {
        ElementWiseOperation op = static_cast<IElementWiseLayer*>(l)->getOperation();
        if (op != ElementWiseOperation::kPOW && op != ElementWiseOperation::kPROD && op != ElementWiseOperation::kSUM)
        {
            return false;
        }
        break;
    }
    default:
        if (!Graph::isPassive(l))
        {
            return false;
        }
    }
    out.insert(l);
    for (int32_t i = 0; i < l->getNbInputs(); i++)
    {
        ITensor* in = l->getInput(i);
        if (in != nullptr && !collectDenominator(g, in, x, depth + 1, out, reachedX, sawSqrt, sawMean))
        {
            return false;
        }
    }
    return true;
}

// Finds LayerNorms that the ONNX parser lowered to primitive layers
// (opset < 17: ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div) and pins
// them to FP32, because their sum of squares overflows FP16 on CLIP's
// residual stream. Returns the number of LayerNorms found.
int32_t pinDecomposedLayerNorms(INetworkDefinition& network, clipd_trt_build& result)
{
    Graph g(network);
    std::set<ILayer*> pinned;
    int32_t found = 0;
    for (int32_t i = 0; i < network.getNbLayers(); i++)
    {
        ILayer* div = network.getLayer(i);
        if (!isElementWise(div, ElementWiseOperation::kDIV))
        {
            continue;
        }
        ITensor* centred = g.source(div->getInput(0));
        ILayer* sub = g.producerOf(centred);
        if (!isElementWise(sub, ElementWiseOperation::kSUB))
        {
            continue;
        }
        ILayer* mean = g.producerOf(g.source(sub->getInput(1)));
        if (!isReduceMean(mean) || g.source(mean->getInput(0)) != g.source(sub->getInput(0)))
        {
            continue;
        }
        std::set<ILayer*> denominator;
        bool reachedX = false, sawSqrt = false, sawMean = false;
        if (!collectDenominator(g, div->getInput(1), centred, 0, denominator, reachedX, sawSqrt, sawMean) || !reachedX
            || !sawSqrt || !sawMean)
        {
            continue;
        }
        found++;
        pinned.insert(mean);
        pinned.insert(sub);
        pinned.insert(div);
        pinned.insert(denominator.begin(), denominator.end());
    }
    for (ILayer* l : pinned)
    {
        l->setPrecision(DataType::kFLOAT);
        for (int32_t j = 0; j < l->getNbOutputs(); j++)
        {
            l->setOutputType(j, DataType::kFLOAT);
        }
    }
    result.fp32Layers += static_cast<int32_t>(pinned.size());
    return found;
}

std::string parserErrors(nvonnxparser::IParser& parser, const char* path)
{
    std::string msg = std::string("TensorRT's ONNX parser rejected ") + path + ":";
    int32_t n = parser.getNbErrors();
    if (n == 0)
    {
        return msg + " no error recorded";
    }
    for (int32_t i = 0; i < n; i++)
    {
        nvonnxparser::IParserError const* e = parser.getError(i);
        msg += "\n  node " + std::to_string(e->node());
#if NV_TENSORRT_MAJOR >= 10
        if (e->nodeName() != nullptr && e->nodeName()[0] != '\0')
        {
            msg += std::string(" (") + e->nodeName() + ", " + (e->nodeOperator() ? e->nodeOperator() : "?") + ")";
        }
#endif
        msg += ": ";
        msg += e->desc();
    }
    return msg;
}

void buildEngine(clipd_trt_build& result, const clipd_trt_build_config& cfg, clipd_trt_log& log)
{
    if (cfg.onnx_path == nullptr)
    {
        throw Failure("no ONNX path given");
    }
    if (cfg.min_batch < 1 || cfg.opt_batch < cfg.min_batch || cfg.max_batch < cfg.opt_batch)
    {
        throw Failure("batch profile must satisfy 1 <= min <= opt <= max, got " + std::to_string(cfg.min_batch) + "/"
            + std::to_string(cfg.opt_batch) + "/" + std::to_string(cfg.max_batch));
    }
    std::unique_ptr<IBuilder> builder(createInferBuilder(log));
    if (!builder)
    {
        throw Failure("createInferBuilder failed: " + log.lastErrorText());
    }
#if NV_TENSORRT_MAJOR >= 10
    uint32_t flags = 0; // explicit batch is the only mode
#else
    uint32_t flags = 1U << static_cast<uint32_t>(NetworkDefinitionCreationFlag::kEXPLICIT_BATCH);
#endif
    std::unique_ptr<INetworkDefinition> network(builder->createNetworkV2(flags));
    if (!network)
    {
        throw Failure("createNetworkV2 failed: " + log.lastErrorText());
    }
    // The parser owns weights the network points at, so it must outlive
    // the build below; unique_ptrs are destroyed in reverse order.
    std::unique_ptr<nvonnxparser::IParser> parser(nvonnxparser::createParser(*network, log));
    if (!parser)
    {
        throw Failure("createParser failed: " + log.lastErrorText());
    }
    if (!parser->parseFromFile(cfg.onnx_path, static_cast<int>(ILogger::Severity::kWARNING)))
    {
        throw Failure(parserErrors(*parser, cfg.onnx_path));
    }
    std::unique_ptr<IBuilderConfig> config(builder->createBuilderConfig());
    if (!config)
    {
        throw Failure("createBuilderConfig failed: " + log.lastErrorText());
    }

    IOptimizationProfile* profile = builder->createOptimizationProfile(); // owned by the builder
    for (int32_t i = 0; i < network->getNbInputs(); i++)
    {
        ITensor* in = network->getInput(i);
        Dims d = in->getDimensions();
        std::string name = in->getName();
        if (d.nbDims < 1)
        {
            throw Failure("input " + name + " is a scalar; clipd needs a batch dimension");
        }
        if (d.d[0] >= 0)
        {
            throw Failure("input " + name + " has a fixed batch of " + std::to_string(d.d[0])
                + "; export the model with a dynamic batch dimension for TensorRT");
        }
        for (int32_t j = 1; j < d.nbDims; j++)
        {
            if (d.d[j] < 0)
            {
                throw Failure("input " + name + " dimension " + std::to_string(j)
                    + " is dynamic; only the batch dimension may be");
            }
        }
        Dims lo = d, opt = d, hi = d;
        lo.d[0] = cfg.min_batch;
        opt.d[0] = cfg.opt_batch;
        hi.d[0] = cfg.max_batch;
        if (!profile->setDimensions(name.c_str(), OptProfileSelector::kMIN, lo)
            || !profile->setDimensions(name.c_str(), OptProfileSelector::kOPT, opt)
            || !profile->setDimensions(name.c_str(), OptProfileSelector::kMAX, hi))
        {
            throw Failure("setting the batch profile of " + name + " failed: " + log.lastErrorText());
        }
    }
    if (config->addOptimizationProfile(profile) < 0)
    {
        throw Failure("addOptimizationProfile failed: " + log.lastErrorText());
    }

    if (cfg.fp16 && builder->platformHasFastFp16())
    {
        config->setFlag(BuilderFlag::kFP16);
        result.fp16 = 1;
    }
    if (cfg.workspace_bytes > 0)
    {
        config->setMemoryPoolLimit(MemoryPoolType::kWORKSPACE, static_cast<size_t>(cfg.workspace_bytes));
    }

    if (result.fp16 && cfg.layernorm_fp32)
    {
#if CLIPD_TRT_AT_LEAST(8, 6)
        // Opset-17 LayerNormalization becomes an INormalizationLayer, which
        // TensorRT computes in FP32 by default (NvInfer.h, setComputePrecision);
        // saying so explicitly guards against a future default change.
        for (int32_t i = 0; i < network->getNbLayers(); i++)
        {
            ILayer* l = network->getLayer(i);
            if (l->getType() == LayerType::kNORMALIZATION)
            {
                static_cast<INormalizationLayer*>(l)->setComputePrecision(DataType::kFLOAT);
                result.layernorms++;
            }
        }
#endif
        // Opset-16 exports decompose LayerNorm on every TensorRT version;
        // 8.5 has no normalization layer at all.
        int32_t decomposed = pinDecomposedLayerNorms(*network, result);
        result.layernorms += decomposed;
        if (decomposed > 0)
        {
            config->setFlag(BuilderFlag::kOBEY_PRECISION_CONSTRAINTS);
        }
    }

    std::unique_ptr<ITimingCache> timing(config->createTimingCache(cfg.timing_cache, cfg.timing_cache_len));
    if (!timing)
    {
        // A cache from another TensorRT version is unreadable; start afresh.
        log.log(ILogger::Severity::kWARNING, "clipd: the saved timing cache was rejected; starting an empty one");
        timing.reset(config->createTimingCache(nullptr, 0));
    }
    if (!timing || !config->setTimingCache(*timing, false))
    {
        log.log(ILogger::Severity::kWARNING, "clipd: the saved timing cache does not match this GPU; starting an empty one");
        timing.reset(config->createTimingCache(nullptr, 0));
        if (!timing || !config->setTimingCache(*timing, false))
        {
            throw Failure("creating a timing cache failed: " + log.lastErrorText());
        }
    }

    std::unique_ptr<IHostMemory> plan(builder->buildSerializedNetwork(*network, *config));
    if (!plan || plan->size() == 0)
    {
        throw Failure("building the engine failed: " + log.lastErrorText());
    }
    auto bytes = static_cast<uint8_t const*>(plan->data());
    result.plan.assign(bytes, bytes + plan->size());

    std::unique_ptr<IHostMemory> saved(config->getTimingCache()->serialize());
    if (saved)
    {
        auto tc = static_cast<uint8_t const*>(saved->data());
        result.timingCache.assign(tc, tc + saved->size());
    }
}

// One I/O tensor of an engine with its staging memory.
struct Binding
{
    std::string name;
    clipd_trt_dtype dtype = CLIPD_TRT_DTYPE_OTHER;
    Dims dims{};
    int64_t itemElems = 1; // elements per batch item
    int64_t minBatch = 0, optBatch = 0, maxBatch = 0;
    size_t bytes = 0;
    void* host = nullptr;   // pinned (and, when mapped, device-visible)
    void* device = nullptr; // what TensorRT reads or writes
};

} // namespace

struct clipd_trt_engine
{
    ~clipd_trt_engine()
    {
        if (stream != nullptr)
        {
            cudaStreamSynchronize(stream);
        }
        context.reset();
        engine.reset();
        runtime.reset();
        for (Binding* b : {&input, &output})
        {
            if (!mapped && b->device != nullptr)
            {
                cudaFree(b->device);
            }
            if (b->host != nullptr)
            {
                cudaFreeHost(b->host);
            }
        }
        if (stream != nullptr)
        {
            cudaStreamDestroy(stream);
        }
    }

    std::unique_ptr<clipd_trt_log> ownLog;
    clipd_trt_log* log = nullptr;
    std::unique_ptr<IRuntime> runtime;
    std::unique_ptr<ICudaEngine> engine;
    std::unique_ptr<IExecutionContext> context;
    cudaStream_t stream = nullptr;
    bool mapped = false;
    Binding input, output;
    std::string error;
};

namespace
{

void describe(clipd_trt_engine& e, const char* name, Binding& b)
{
    ICudaEngine& engine = *e.engine;
    b.name = name;
    b.dtype = mapType(engine.getTensorDataType(name));
    b.dims = engine.getTensorShape(name);
    if (b.dims.nbDims < 1 || b.dims.nbDims > CLIPD_TRT_MAX_DIMS)
    {
        throw Failure("tensor " + b.name + " has " + std::to_string(b.dims.nbDims) + " dimensions");
    }
    for (int32_t j = 1; j < b.dims.nbDims; j++)
    {
        if (b.dims.d[j] < 0)
        {
            throw Failure("tensor " + b.name + " dimension " + std::to_string(j) + " is dynamic");
        }
        b.itemElems *= b.dims.d[j];
    }
    if (typeSize(b.dtype) == 0)
    {
        throw Failure("tensor " + b.name + " has a type clipd cannot stage");
    }
}

void allocate(clipd_trt_engine& e, Binding& b, int64_t maxBatch)
{
    b.bytes = static_cast<size_t>(maxBatch * b.itemElems) * typeSize(b.dtype);
    if (e.mapped)
    {
        // Jetson: CPU and GPU share DRAM, so the GPU reads the pinned pages
        // directly and the copies of the discrete path would be pure cost.
        checkCuda(cudaHostAlloc(&b.host, b.bytes, cudaHostAllocMapped), "cudaHostAlloc(mapped)");
        checkCuda(cudaHostGetDevicePointer(&b.device, b.host, 0), "cudaHostGetDevicePointer");
    }
    else
    {
        checkCuda(cudaHostAlloc(&b.host, b.bytes, cudaHostAllocDefault), "cudaHostAlloc");
        checkCuda(cudaMalloc(&b.device, b.bytes), "cudaMalloc");
    }
    if (!e.context->setTensorAddress(b.name.c_str(), b.device))
    {
        throw Failure("setTensorAddress(" + b.name + ") failed: " + e.log->lastErrorText());
    }
}

void loadEngine(clipd_trt_engine& e, const void* plan, size_t len)
{
    e.runtime.reset(createInferRuntime(*e.log));
    if (!e.runtime)
    {
        throw Failure("createInferRuntime failed: " + e.log->lastErrorText());
    }
    e.engine.reset(e.runtime->deserializeCudaEngine(plan, len));
    if (!e.engine)
    {
        throw Failure("deserializing the engine failed (built by another TensorRT version or for another GPU?): "
            + e.log->lastErrorText());
    }
    int32_t n = e.engine->getNbIOTensors();
    const char* in = nullptr;
    const char* out = nullptr;
    for (int32_t i = 0; i < n; i++)
    {
        const char* name = e.engine->getIOTensorName(i);
        TensorIOMode mode = e.engine->getTensorIOMode(name);
        if (mode == TensorIOMode::kINPUT)
        {
            if (in != nullptr)
            {
                throw Failure(std::string("engine has more than one input: ") + in + ", " + name);
            }
            in = name;
        }
        else if (mode == TensorIOMode::kOUTPUT)
        {
            if (out != nullptr)
            {
                throw Failure(std::string("engine has more than one output: ") + out + ", " + name);
            }
            out = name;
        }
    }
    if (in == nullptr || out == nullptr)
    {
        throw Failure("engine needs one input and one output, has " + std::to_string(n) + " I/O tensors");
    }
    describe(e, in, e.input);
    describe(e, out, e.output);
    e.input.minBatch = e.engine->getProfileShape(in, 0, OptProfileSelector::kMIN).d[0];
    e.input.optBatch = e.engine->getProfileShape(in, 0, OptProfileSelector::kOPT).d[0];
    e.input.maxBatch = e.engine->getProfileShape(in, 0, OptProfileSelector::kMAX).d[0];
    if (e.input.maxBatch < 1)
    {
        throw Failure("engine input " + e.input.name + " has no batch profile");
    }

    e.context.reset(e.engine->createExecutionContext());
    if (!e.context)
    {
        throw Failure("createExecutionContext failed: " + e.log->lastErrorText());
    }
    int device = 0;
    checkCuda(cudaGetDevice(&device), "cudaGetDevice");
    cudaDeviceProp prop{};
    checkCuda(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
    e.mapped = prop.integrated != 0 && prop.canMapHostMemory != 0;
    allocate(e, e.input, e.input.maxBatch);
    allocate(e, e.output, e.input.maxBatch);
    checkCuda(cudaStreamCreateWithFlags(&e.stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
}

void stageInput(Binding& b, const void* src, clipd_trt_dtype srcType, int64_t n)
{
    switch (b.dtype)
    {
    case CLIPD_TRT_DTYPE_FLOAT:
        if (srcType != CLIPD_TRT_DTYPE_FLOAT)
        {
            break;
        }
        std::memcpy(b.host, src, static_cast<size_t>(n) * 4);
        return;
    case CLIPD_TRT_DTYPE_HALF:
        if (srcType != CLIPD_TRT_DTYPE_FLOAT)
        {
            break;
        }
        for (int64_t i = 0; i < n; i++)
        {
            static_cast<uint16_t*>(b.host)[i] = floatToHalf(static_cast<const float*>(src)[i]);
        }
        return;
    case CLIPD_TRT_DTYPE_INT32:
        if (srcType != CLIPD_TRT_DTYPE_INT32)
        {
            break;
        }
        std::memcpy(b.host, src, static_cast<size_t>(n) * 4);
        return;
    case CLIPD_TRT_DTYPE_INT64:
        if (srcType != CLIPD_TRT_DTYPE_INT32)
        {
            break;
        }
        for (int64_t i = 0; i < n; i++)
        {
            static_cast<int64_t*>(b.host)[i] = static_cast<const int32_t*>(src)[i];
        }
        return;
    default: break;
    }
    throw Failure("input " + b.name + " is " + typeName(b.dtype) + " but the caller passed " + typeName(srcType));
}

void infer(clipd_trt_engine& e, const void* input, clipd_trt_dtype inputType, int64_t inputLen, int32_t batch,
    float* output, int64_t outputLen)
{
    if (batch < e.input.minBatch || batch > e.input.maxBatch)
    {
        throw Failure("batch " + std::to_string(batch) + " is outside the engine's profile "
            + std::to_string(e.input.minBatch) + ".." + std::to_string(e.input.maxBatch));
    }
    if (inputLen != batch * e.input.itemElems)
    {
        throw Failure("input has " + std::to_string(inputLen) + " values, want " + std::to_string(batch) + " x "
            + std::to_string(e.input.itemElems));
    }
    if (outputLen != batch * e.output.itemElems)
    {
        throw Failure("output buffer has " + std::to_string(outputLen) + " values, want " + std::to_string(batch)
            + " x " + std::to_string(e.output.itemElems));
    }
    stageInput(e.input, input, inputType, inputLen);
    Dims shape = e.input.dims;
    shape.d[0] = batch;
    if (!e.context->setInputShape(e.input.name.c_str(), shape))
    {
        throw Failure("setInputShape failed: " + e.log->lastErrorText());
    }
    size_t inBytes = static_cast<size_t>(inputLen) * typeSize(e.input.dtype);
    size_t outBytes = static_cast<size_t>(outputLen) * typeSize(e.output.dtype);
    if (!e.mapped)
    {
        checkCuda(cudaMemcpyAsync(e.input.device, e.input.host, inBytes, cudaMemcpyHostToDevice, e.stream),
            "cudaMemcpyAsync(input)");
    }
    if (!e.context->enqueueV3(e.stream))
    {
        cudaStreamSynchronize(e.stream);
        throw Failure("enqueueV3 failed: " + e.log->lastErrorText());
    }
    if (!e.mapped)
    {
        checkCuda(cudaMemcpyAsync(e.output.host, e.output.device, outBytes, cudaMemcpyDeviceToHost, e.stream),
            "cudaMemcpyAsync(output)");
    }
    checkCuda(cudaStreamSynchronize(e.stream), "cudaStreamSynchronize");
    switch (e.output.dtype)
    {
    case CLIPD_TRT_DTYPE_FLOAT: std::memcpy(output, e.output.host, outBytes); break;
    case CLIPD_TRT_DTYPE_HALF:
        for (int64_t i = 0; i < outputLen; i++)
        {
            output[i] = halfToFloat(static_cast<const uint16_t*>(e.output.host)[i]);
        }
        break;
    default:
        throw Failure("output " + e.output.name + " is " + typeName(e.output.dtype) + "; clipd reads float outputs");
    }
}

} // namespace

extern "C" {

clipd_trt_log* clipd_trt_log_new(clipd_trt_severity min_severity)
{
    try
    {
        return new clipd_trt_log(min_severity);
    }
    catch (...)
    {
        return nullptr;
    }
}

void clipd_trt_log_free(clipd_trt_log* log)
{
    delete log;
}

int clipd_trt_log_next(clipd_trt_log* log, char* buf, size_t len, clipd_trt_severity* severity)
{
    if (log == nullptr)
    {
        return 0;
    }
    try
    {
        std::lock_guard<std::mutex> lock(log->mu);
        if (log->queue.empty())
        {
            return 0;
        }
        copyText(buf, len, log->queue.front().second);
        if (severity != nullptr)
        {
            *severity = log->queue.front().first;
        }
        log->queue.pop_front();
        return 1;
    }
    catch (...)
    {
        return 0;
    }
}

int clipd_trt_get_versions(clipd_trt_versions* out, char* err, size_t errlen)
{
    try
    {
        *out = clipd_trt_versions{};
        out->trt_major = NV_TENSORRT_MAJOR;
        out->trt_minor = NV_TENSORRT_MINOR;
        out->trt_patch = NV_TENSORRT_PATCH;
        out->trt_linked = getInferLibVersion();
        out->parser = getNvOnnxParserVersion();
        checkCuda(cudaRuntimeGetVersion(&out->cuda_runtime), "cudaRuntimeGetVersion");
        checkCuda(cudaDriverGetVersion(&out->cuda_driver), "cudaDriverGetVersion");
        return 0;
    }
    catch (const std::exception& ex)
    {
        copyText(err, errlen, ex.what());
    }
    catch (...)
    {
        copyText(err, errlen, "unknown C++ exception");
    }
    return -1;
}

int clipd_trt_get_device(clipd_trt_device* out, char* err, size_t errlen)
{
    try
    {
        *out = clipd_trt_device{};
        int count = 0;
        checkCuda(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
        if (count == 0)
        {
            throw Failure("no CUDA device");
        }
        int device = 0;
        checkCuda(cudaGetDevice(&device), "cudaGetDevice");
        cudaDeviceProp prop{};
        checkCuda(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
        copyText(out->name, sizeof out->name, prop.name);
        out->cc_major = prop.major;
        out->cc_minor = prop.minor;
        out->sm_count = prop.multiProcessorCount;
        out->integrated = prop.integrated;
        out->can_map_host = prop.canMapHostMemory;
        size_t freeMem = 0, total = 0;
        checkCuda(cudaMemGetInfo(&freeMem, &total), "cudaMemGetInfo");
        out->total_memory = total;
        out->free_memory = freeMem;
        return 0;
    }
    catch (const std::exception& ex)
    {
        copyText(err, errlen, ex.what());
    }
    catch (...)
    {
        copyText(err, errlen, "unknown C++ exception");
    }
    return -1;
}

clipd_trt_build* clipd_trt_build_new(void)
{
    try
    {
        return new clipd_trt_build();
    }
    catch (...)
    {
        return nullptr;
    }
}

void clipd_trt_build_free(clipd_trt_build* b)
{
    delete b;
}

int clipd_trt_build_run(clipd_trt_build* b, const clipd_trt_build_config* cfg, clipd_trt_log* log)
{
    if (b == nullptr)
    {
        return -1;
    }
    try
    {
        if (cfg == nullptr)
        {
            throw Failure("no build configuration");
        }
        clipd_trt_log quiet(CLIPD_TRT_SEV_WARNING);
        buildEngine(*b, *cfg, log != nullptr ? *log : quiet);
        return 0;
    }
    catch (const std::exception& ex)
    {
        b->error = ex.what();
    }
    catch (...)
    {
        b->error = "unknown C++ exception";
    }
    b->plan.clear();
    return -1;
}

const char* clipd_trt_build_error(const clipd_trt_build* b)
{
    return b == nullptr ? "no build handle" : b->error.c_str();
}

const void* clipd_trt_build_plan(const clipd_trt_build* b, size_t* len)
{
    *len = b->plan.size();
    return b->plan.data();
}

const void* clipd_trt_build_timing_cache(const clipd_trt_build* b, size_t* len)
{
    *len = b->timingCache.size();
    return b->timingCache.data();
}

int32_t clipd_trt_build_fp16_used(const clipd_trt_build* b)
{
    return b->fp16;
}

int32_t clipd_trt_build_fp32_layers(const clipd_trt_build* b)
{
    return b->fp32Layers;
}

int32_t clipd_trt_build_layernorms(const clipd_trt_build* b)
{
    return b->layernorms;
}

clipd_trt_engine* clipd_trt_engine_load(const void* plan, size_t len, clipd_trt_log* log, char* err, size_t errlen)
{
    clipd_trt_engine* e = nullptr;
    try
    {
        e = new clipd_trt_engine();
        if (log == nullptr)
        {
            e->ownLog.reset(new clipd_trt_log(CLIPD_TRT_SEV_WARNING));
            log = e->ownLog.get();
        }
        e->log = log;
        loadEngine(*e, plan, len);
        return e;
    }
    catch (const std::exception& ex)
    {
        copyText(err, errlen, ex.what());
    }
    catch (...)
    {
        copyText(err, errlen, "unknown C++ exception");
    }
    delete e;
    return nullptr;
}

void clipd_trt_engine_free(clipd_trt_engine* e)
{
    try
    {
        delete e;
    }
    catch (...)
    {
        // Destructors of TensorRT objects do not throw; nothing to report.
    }
}

const char* clipd_trt_engine_error(const clipd_trt_engine* e)
{
    return e == nullptr ? "no engine handle" : e->error.c_str();
}

int32_t clipd_trt_engine_mapped(const clipd_trt_engine* e)
{
    return e->mapped ? 1 : 0;
}

int clipd_trt_engine_tensor(const clipd_trt_engine* e, int i, clipd_trt_tensor* out)
{
    if (e == nullptr || out == nullptr || (i != 0 && i != 1))
    {
        return -1;
    }
    const Binding& b = i == 0 ? e->input : e->output;
    *out = clipd_trt_tensor{};
    copyText(out->name, sizeof out->name, b.name);
    out->mode = i == 0 ? CLIPD_TRT_IO_INPUT : CLIPD_TRT_IO_OUTPUT;
    out->dtype = b.dtype;
    out->nb_dims = b.dims.nbDims;
    for (int32_t j = 0; j < b.dims.nbDims && j < CLIPD_TRT_MAX_DIMS; j++)
    {
        out->dims[j] = b.dims.d[j];
    }
    out->min_batch = e->input.minBatch;
    out->opt_batch = e->input.optBatch;
    out->max_batch = e->input.maxBatch;
    return 0;
}

int clipd_trt_engine_infer(clipd_trt_engine* e, const void* input, clipd_trt_dtype input_type, int64_t input_len,
    int32_t batch, float* output, int64_t output_len)
{
    if (e == nullptr)
    {
        return -1;
    }
    try
    {
        e->error.clear();
        infer(*e, input, input_type, input_len, batch, output, output_len);
        return 0;
    }
    catch (const std::exception& ex)
    {
        e->error = ex.what();
    }
    catch (...)
    {
        e->error = "unknown C++ exception";
    }
    return -1;
}

} // extern "C"
