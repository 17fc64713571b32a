/*
 * wlmsim.c: a simulated HighFinesse wavemeter behind the vendor's libwlmData API.
 *
 * It exports every function of wlmData.h (listed in ../wlmdata.txt) with the
 * vendor's names and signatures (cdecl, int32_t integers, bool as unsigned
 * char), so a binding generated from the header loads it unchanged. Loaded as
 * it is, it behaves like a running wavemeter measuring 8 calcium-ion lasers
 * through its fiber switch, on a clock that follows the monotonic wall clock.
 * Functions it does not simulate answer "not available" (-6), or 0.
 *
 * The model (drivers/highfinesse/simulated.py is its pure-Python twin and must
 * stay in step with it, operation for operation, so both give the same bits):
 *   - the switch has N channels (1..17), each carrying a laser; used channels
 *     are measured in turn, each taking exposure + 12 ms (exposure alone when
 *     the switcher mode is off and only the selected channel is measured); a
 *     channel's value changes only when the switch measures it;
 *   - frequency = base + (walk + sine + outputs + noise) / 1e6 THz, where walk
 *     is a random walk (walk_mhz * sqrt(dt) * gauss per measurement), sine is
 *     sine_mhz * sin(2 pi t / period), outputs is gain (MHz/V) times the volts
 *     of every analog port mapped to the channel, noise is noise_mhz * gauss;
 *     random numbers are splitmix64 + Box-Muller (one gauss per two draws);
 *   - power * exposure (uW ms) below 50 is underexposed (-3), above 20000
 *     overexposed (-4); with auto exposure on, such a shot resets the
 *     exposure to round(1000 / power) ms for the next one;
 *   - no light -1, bad signal -2, unused channel -1, channel past the last
 *     -10, never measured 0, software not running: getters -5, setters -1.
 *
 * Control API (not in the vendor header; arguments out of range return -1):
 *   Sim_Reset(seed, nchannels)       defaults, clock at 0 (its mode kept)
 *   Sim_SetRealtime(on)              follow the wall clock (1) or Sim_Advance (0)
 *   Sim_Advance(seconds)             move the simulated clock forward
 *   Sim_Now()                        the simulated clock (s)
 *   Sim_SetServerRunning(on)         the wavemeter software runs or not
 *   Sim_SetLaser(ch, thz, power_uw)
 *   Sim_SetDrift(ch, walk_mhz_per_sqrt_s, sine_mhz, period_s)
 *   Sim_SetNoise(ch, mhz)
 *   Sim_SetGain(port, mhz_per_volt)
 *   Sim_MapPort(port, ch)            ch 0: the port drives no laser
 *   Sim_SetSignal(ch, state)         0 no light, 1 good, 2 bad
 *   Sim_InjectNeighbour(ch)          ch's next value is the previous shot's
 *   Sim_ModeHop(ch, ghz)             the laser jumps by ghz (base += ghz / 1000 THz)
 *   Sim_SetReadDelay(ms)             every getter sleeps that long first
 *   Sim_Hold(on), Sim_Release()      getters block until released
 *   Sim_TrueFrequency(ch)            frequency now, without noise (THz)
 *   Sim_MeasurementCount(ch)         shots of ch since the reset
 * Signatures are at the end of this file. Every function is thread-safe (one mutex).
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#define NCH 17
#define NPORTS 8
#define SWITCH_MS 12.0
#define SKIP_CYCLES 100
#define LOW_UW_MS 50.0
#define HIGH_UW_MS 20000.0
#define TARGET_UW_MS 1000.0
#define EXPOSURE_MIN 1
#define EXPOSURE_MAX 9999
#define PORT_MAX_MV 4096.0
#define C_NM_THZ 299792.458

/* get-function errors */
enum { ErrNoValue = 0, ErrNoSignal = -1, ErrBadSignal = -2, ErrLowSignal = -3, ErrBigSignal = -4,
       ErrWlmMissing = -5, ErrNotAvailable = -6, ErrChannelNotAvailable = -10,
       ErrParmOutOfRange = -28 };
/* set-function errors */
enum { ResERR_NoErr = 0, ResERR_WlmMissing = -1, ResERR_ParmOutOfRange = -3,
       ResERR_NotAvailable = -6, ResERR_ChannelNotAvailable = -10, ResERR_NotInSwitchMode = -24 };

struct laser {
    double base_thz, power_uw, walk_mhz, sine_mhz, period_s, noise_mhz;
    int signal, use, show, auto_exposure, neighbour;
    int32_t exposure[2];
    double walk, last_t, value, power;
    int64_t count;
};

/* The demo lab: calcium-ion lasers first. */
static const double DEMO[NCH][2] = {  /* THz, uW */
    {755.2227, 120.0}, {346.0000, 80.0}, {350.8627, 60.0}, {709.0780, 40.0},
    {799.3870, 30.0}, {411.0420, 150.0}, {352.6820, 70.0}, {170.1300, 90.0},
    {762.8900, 50.0}, {409.4900, 60.0}, {384.2304, 100.0}, {473.6127, 200.0},
    {281.6300, 110.0}, {563.2600, 45.0}, {710.9620, 35.0}, {274.5900, 65.0},
    {444.7790, 55.0},
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t released;
    uint64_t rng;
    int nch, switcher, selected, op, running, realtime, hold, deviation_mode, slot;
    struct laser ch[NCH + 1];
    double mv[NPORTS + 1], gain[NPORTS + 1];
    int port_ch[NPORTS + 1];
    double delay_ms, base_t, mono_base, next_t, last_value;
} S = {.mu = PTHREAD_MUTEX_INITIALIZER, .released = PTHREAD_COND_INITIALIZER};

static uint64_t splitmix64(void)
{
    uint64_t z = (S.rng += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static double gauss(void)
{
    double u1 = (double)((splitmix64() >> 11) + 1) * 0x1.0p-53;
    double u2 = (double)(splitmix64() >> 11) * 0x1.0p-53;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double now(void)
{
    return S.realtime ? S.base_t + (mono() - S.mono_base) : S.base_t;
}

static double slot_s(int c)
{
    return (S.ch[c].exposure[0] + (S.switcher ? SWITCH_MS : 0.0)) / 1000.0;
}

/* The next used channel after c (c itself last), 0 when none is used. */
static int next_used(int c)
{
    for (int i = 1; i <= S.nch; i++) {
        int n = (c - 1 + i) % S.nch + 1;
        if (S.ch[n].use)
            return n;
    }
    return 0;
}

static double cycle_s(void)
{
    if (!S.switcher)
        return slot_s(S.selected);
    double sum = 0.0;
    for (int c = 1; c <= S.nch; c++)
        if (S.ch[c].use)
            sum += slot_s(c);
    return sum;
}

static double true_frequency(int c, double t)
{
    struct laser *l = &S.ch[c];
    double sine = l->period_s > 0 ? l->sine_mhz * sin(2.0 * M_PI * t / l->period_s) : 0.0;
    double pull = 0.0;
    for (int p = 1; p <= NPORTS; p++)
        if (S.port_ch[p] == c)
            pull += S.gain[p] * S.mv[p] / 1000.0;
    return l->base_thz + (l->walk + sine + pull) / 1e6;
}

static void measure(int c, double t)
{
    struct laser *l = &S.ch[c];
    double dt = t - l->last_t;
    l->last_t = t;
    if (dt > 0)
        l->walk += l->walk_mhz * sqrt(dt) * gauss();
    if (l->signal == 0 || l->power_uw <= 0) {
        l->value = ErrNoSignal;
        l->power = ErrNoSignal;
    } else {
        double e = l->power_uw * l->exposure[0];
        if (l->signal == 2) {
            l->value = ErrBadSignal;
        } else if (e < LOW_UW_MS || e > HIGH_UW_MS) {
            l->value = e < LOW_UW_MS ? ErrLowSignal : ErrBigSignal;
            if (l->auto_exposure) {
                double ms = floor(TARGET_UW_MS / l->power_uw + 0.5);
                l->exposure[0] = (int32_t)fmin(fmax(ms, EXPOSURE_MIN), EXPOSURE_MAX);
            }
        } else {
            double noise = l->noise_mhz * gauss();
            l->value = true_frequency(c, t) + noise / 1e6;
            if (l->neighbour)
                l->value = S.last_value;
            l->neighbour = 0;
        }
        l->power = l->power_uw;
    }
    l->count++;
    S.last_value = l->value;
}

/* Start the slot in progress again from t (after any change of the switching). */
static void reschedule(double t)
{
    if (S.switcher && !S.ch[S.slot].use)
        S.slot = next_used(S.slot);
    int c = S.switcher ? S.slot : S.selected;
    S.next_t = (S.op == 2 && c) ? t + slot_s(c) : INFINITY;
}

/* Take every measurement due by t. More than SKIP_CYCLES behind, whole cycles but the
   last are counted, not measured (the walk then takes the gap in one step). */
static void catch_up(double t)
{
    if (!isfinite(S.next_t))
        return;
    double cycle = cycle_s();
    if (t - S.next_t > SKIP_CYCLES * cycle) {
        double k = floor((t - S.next_t) / cycle) - 1.0;
        S.next_t += k * cycle;
        for (int c = 1; c <= S.nch; c++)
            if (S.switcher ? S.ch[c].use : c == S.selected)
                S.ch[c].count += (int64_t)k;
    }
    while (S.next_t <= t) {
        int c = S.switcher ? S.slot : S.selected;
        measure(c, S.next_t);
        if (S.switcher)
            S.slot = next_used(c);
        S.next_t += slot_s(S.switcher ? S.slot : S.selected);
    }
}

static void reset(uint64_t seed, int nch)
{
    S.rng = seed;
    S.nch = nch;
    for (int c = 1; c <= NCH; c++) {
        S.ch[c] = (struct laser){
            .base_thz = DEMO[c - 1][0], .power_uw = DEMO[c - 1][1], .walk_mhz = 0.5,
            .sine_mhz = 5.0, .period_s = 600.0, .noise_mhz = 0.3, .signal = 1,
            .use = c <= nch, .show = c <= nch, .exposure = {10, 10}};
    }
    for (int p = 1; p <= NPORTS; p++) {
        S.mv[p] = 0.0;
        S.gain[p] = 100.0;
        S.port_ch[p] = p;
    }
    S.switcher = 1;
    S.selected = S.slot = 1;
    S.op = 2;
    S.running = 1;
    S.hold = 0;
    S.deviation_mode = 0;
    S.delay_ms = 0.0;
    S.base_t = 0.0;
    S.mono_base = mono();
    S.last_value = ErrNoValue;
    reschedule(0.0);
}

#define WARM_S 1.0

__attribute__((constructor)) static void load(void)
{
    S.realtime = 1;
    reset(0, 8);
    S.mono_base -= WARM_S; /* like a wavemeter already measuring when a client connects */
}

/* Enter a vendor function: lock, bring the measurements up to date. */
static double enter(void)
{
    pthread_mutex_lock(&S.mu);
    double t = now();
    if (S.running)
        catch_up(t);
    return t;
}

/* Enter a getter: the read delay, then wait while held. */
static double enter_getter(void)
{
    pthread_mutex_lock(&S.mu);
    double ms = S.delay_ms;
    pthread_mutex_unlock(&S.mu);
    if (ms > 0) {
        struct timespec ts = {(time_t)(ms / 1000.0), (long)(fmod(ms, 1000.0) * 1e6)};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(&S.mu);
    while (S.hold)
        pthread_cond_wait(&S.released, &S.mu);
    pthread_mutex_unlock(&S.mu);
    return enter();
}

static void leave(void)
{
    pthread_mutex_unlock(&S.mu);
}

/* Return a getter's answer: expr, evaluated after enter_getter(), under the lock. */
#define ANSWER(type, expr)                                                                        \
    do {                                                                                          \
        enter_getter();                                                                           \
        type answer_ = (expr);                                                                    \
        leave();                                                                                  \
        return answer_;                                                                           \
    } while (0)

static int bad_channel(int32_t c)
{
    return c < 1 || c > S.nch;
}

static int bad_port(int32_t p)
{
    return p < 1 || p > NPORTS;
}

/* The result of channel c for a getter: its value (which 0) or its power (which 1). */
static double result(int32_t c, int which)
{
    ANSWER(double, !S.running                  ? ErrWlmMissing
                   : bad_channel(c)            ? ErrChannelNotAvailable
                   : S.switcher && !S.ch[c].use ? ErrNoSignal
                   : which                     ? S.ch[c].power
                                               : S.ch[c].value);
}

/* ---- simulated vendor functions ---- */

int32_t GetWLMCount(int32_t V)
{
    (void)V;
    ANSWER(int32_t, S.running);
}

int32_t GetWLMVersion(int32_t Ver)
{
    static const int32_t version[4] = {7, 4711, 720, 2031};
    ANSWER(int32_t, !S.running              ? ErrWlmMissing
                    : (Ver >= 0 && Ver < 4) ? version[Ver]
                                            : ErrNotAvailable);
}

intptr_t Instantiate(int32_t RFC, int32_t Mode, intptr_t P1, int32_t P2)
{
    (void)Mode, (void)P1, (void)P2;
    enter();
    intptr_t r = RFC == -1 ? S.running : 0; /* cInstCheckForWLM */
    leave();
    return r;
}

double GetFrequencyNum(int32_t num, double F)
{
    (void)F;
    return result(num, 0);
}

double GetWavelengthNum(int32_t num, double WL)
{
    (void)WL;
    double f = result(num, 0);
    return f > 0 ? C_NM_THZ / f : f;
}

double GetFrequency(double F)
{
    return GetFrequencyNum(1, F);
}

double GetWavelength(double WL)
{
    return GetWavelengthNum(1, WL);
}

double GetPowerNum(int32_t num, double P)
{
    (void)P;
    return result(num, 1);
}

int32_t GetExposureNum(int32_t num, int32_t arr, int32_t E)
{
    (void)E;
    ANSWER(int32_t, !S.running                ? ErrWlmMissing
                    : bad_channel(num)        ? ErrChannelNotAvailable
                    : (arr != 1 && arr != 2)  ? ErrParmOutOfRange
                                              : S.ch[num].exposure[arr - 1]);
}

int32_t SetExposureNum(int32_t num, int32_t arr, int32_t E)
{
    double t = enter();
    int32_t r = !S.running                                         ? ResERR_WlmMissing
              : bad_channel(num)                                   ? ResERR_ChannelNotAvailable
              : (arr != 1 && arr != 2) || E < EXPOSURE_MIN || E > EXPOSURE_MAX
                                                                   ? ResERR_ParmOutOfRange
                                                                   : ResERR_NoErr;
    if (r == ResERR_NoErr) {
        S.ch[num].exposure[arr - 1] = E;
        reschedule(t);
    }
    leave();
    return r;
}

int32_t GetExposureModeNum(int32_t num, unsigned char EM)
{
    (void)EM;
    ANSWER(int32_t, !S.running ? ErrWlmMissing
                    : bad_channel(num) ? ErrChannelNotAvailable : S.ch[num].auto_exposure);
}

int32_t SetExposureModeNum(int32_t num, unsigned char EM)
{
    enter();
    int32_t r = !S.running ? ResERR_WlmMissing
              : bad_channel(num) ? ResERR_ChannelNotAvailable : ResERR_NoErr;
    if (r == ResERR_NoErr)
        S.ch[num].auto_exposure = EM != 0;
    leave();
    return r;
}

int32_t GetSwitcherMode(int32_t SM)
{
    (void)SM;
    ANSWER(int32_t, S.running ? S.switcher : ErrWlmMissing);
}

int32_t SetSwitcherMode(int32_t SM)
{
    double t = enter();
    int32_t r = !S.running ? ResERR_WlmMissing
              : (SM != 0 && SM != 1) ? ResERR_ParmOutOfRange : ResERR_NoErr;
    if (r == ResERR_NoErr && SM != S.switcher) {
        if (SM)
            S.slot = S.selected;
        else if (S.slot)
            S.selected = S.slot;
        S.switcher = SM;
        reschedule(t);
    }
    leave();
    return r;
}

int32_t GetSwitcherChannel(int32_t CH)
{
    (void)CH;
    ANSWER(int32_t, !S.running ? ErrWlmMissing : S.switcher ? S.slot : S.selected);
}

int32_t SetSwitcherChannel(int32_t CH)
{
    double t = enter();
    int32_t r = !S.running ? ResERR_WlmMissing
              : S.switcher ? ResERR_NotInSwitchMode
              : bad_channel(CH) ? ResERR_ChannelNotAvailable : ResERR_NoErr;
    if (r == ResERR_NoErr) {
        S.selected = CH;
        reschedule(t);
    }
    leave();
    return r;
}

int32_t GetSwitcherSignalStates(int32_t Signal, int32_t *Use, int32_t *Show)
{
    enter_getter();
    int32_t v = !S.running ? ErrWlmMissing : bad_channel(Signal) ? ErrChannelNotAvailable : 0;
    if (v == 0) {
        *Use = S.ch[Signal].use;
        *Show = S.ch[Signal].show;
    }
    leave();
    return v;
}

int32_t SetSwitcherSignalStates(int32_t Signal, int32_t Use, int32_t Show)
{
    double t = enter();
    int32_t r = !S.running ? ResERR_WlmMissing
              : bad_channel(Signal) ? ResERR_ChannelNotAvailable
              : (Use != 0 && Use != 1) || (Show != 0 && Show != 1) ? ResERR_ParmOutOfRange
              : ResERR_NoErr;
    if (r == ResERR_NoErr) {
        S.ch[Signal].use = Use;
        S.ch[Signal].show = Show;
        reschedule(t);
    }
    leave();
    return r;
}

int32_t SetSwitcherSignal(int32_t Signal, int32_t Use, int32_t Show)
{
    return SetSwitcherSignalStates(Signal, Use, Show);
}

int32_t GetChannelsCount(int32_t C)
{
    (void)C;
    ANSWER(int32_t, S.running ? S.nch : ErrWlmMissing);
}

uint16_t GetOperationState(uint16_t OS)
{
    (void)OS;
    ANSWER(uint16_t, S.running ? (uint16_t)S.op : 0);
}

int32_t Operation(uint16_t Op)
{
    double t = enter();
    int32_t r = !S.running ? ResERR_WlmMissing : Op > 2 ? ResERR_ParmOutOfRange : ResERR_NoErr;
    if (r == ResERR_NoErr) {
        S.op = Op;
        reschedule(t);
    }
    leave();
    return r;
}

unsigned char GetDeviationMode(unsigned char DM)
{
    (void)DM;
    ANSWER(unsigned char, S.running && S.deviation_mode);
}

int32_t SetDeviationMode(unsigned char DM)
{
    enter();
    int32_t r = S.running ? ResERR_NoErr : ResERR_WlmMissing;
    if (r == ResERR_NoErr)
        S.deviation_mode = DM != 0;
    leave();
    return r;
}

double GetDeviationSignalNum(int32_t Port, double DS)
{
    (void)DS;
    ANSWER(double, !S.running ? ErrWlmMissing
                   : bad_port(Port) ? ErrChannelNotAvailable : S.mv[Port]);
}

int32_t SetDeviationSignalNum(int32_t Port, double DS)
{
    enter();
    int32_t r = !S.running ? ResERR_WlmMissing
              : bad_port(Port) ? ResERR_ChannelNotAvailable
              : !(fabs(DS) <= PORT_MAX_MV) ? ResERR_ParmOutOfRange : ResERR_NoErr;
    if (r == ResERR_NoErr)
        S.mv[Port] = DS;
    leave();
    return r;
}

/* ---- the rest of the header: not simulated ---- */

static int32_t stub_get(void)
{
    enter();
    int32_t v = S.running ? ErrNotAvailable : ErrWlmMissing;
    leave();
    return v;
}

static int32_t stub_set(void)
{
    enter();
    int32_t v = S.running ? ResERR_NotAvailable : ResERR_WlmMissing;
    leave();
    return v;
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
int32_t WaitForWLMEvent(int32_t* Mode, int32_t* IntVal, double* DblVal) { return stub_set(); }
int32_t WaitForWLMEventEx(int32_t* Ver, int32_t* Mode, int32_t* IntVal, double* DblVal, int32_t* Res1) { return stub_set(); }
int32_t WaitForNextWLMEvent(int32_t* Mode, int32_t* IntVal, double* DblVal) { return stub_set(); }
int32_t WaitForNextWLMEventEx(int32_t* Ver, int32_t* Mode, int32_t* IntVal, double* DblVal, int32_t* Res1) { return stub_set(); }
void ClearWLMEvents(void) { }
int32_t ControlWLM(int32_t Action, intptr_t App, int32_t Ver) { return stub_set(); }
int32_t ControlWLMEx(int32_t Action, intptr_t App, int32_t Ver, int32_t Delay, int32_t Res) { return stub_set(); }
int64_t SynchroniseWLM(int32_t Mode, int64_t TS) { return 0; }
int32_t SetMeasurementDelayMethod(int32_t Mode, int32_t Delay) { return stub_set(); }
int32_t SetWLMPriority(int32_t PPC, int32_t Res1, int32_t Res2) { return stub_set(); }
int32_t PresetWLMIndex(int32_t Ver) { return stub_set(); }
int32_t GetWLMIndex(int32_t Ver) { return stub_get(); }
int32_t GetOptionInfo(int32_t Index, int32_t Detail, int64_t* I64Val, double* DblVal, char* sVal) { return stub_get(); }
double GetWavelength2(double WL2) { return stub_get(); }
double GetCalWavelength(int32_t ba, double WL) { return stub_get(); }
double GetCalibrationEffect(double CE) { return stub_get(); }
double GetFrequency2(double F2) { return stub_get(); }
double GetLinewidth(int32_t Index, double LW) { return stub_get(); }
double GetLinewidthNum(int32_t num, double LW) { return stub_get(); }
double GetDistance(double D) { return stub_get(); }
double GetAnalogIn(double AI) { return stub_get(); }
double GetMultimodeInfo(int32_t num, int32_t type, int32_t mode, double* Val) { return stub_get(); }
int32_t GetResultInfo(int32_t num, int32_t info) { return stub_get(); }
double GetMeasurementUncertainty(int32_t Index, int32_t num, double MU) { return stub_get(); }
double GetTemperature(double T) { return stub_get(); }
int32_t SetTemperature(double T) { return stub_set(); }
double GetPressure(double P) { return stub_get(); }
int32_t SetPressure(int32_t Mode, double P) { return stub_set(); }
int32_t GetAirParameters(int32_t Mode, int32_t* State, double* Val) { return stub_get(); }
int32_t SetAirParameters(int32_t Mode, int32_t State, double Val) { return stub_set(); }
double GetExternalInput(int32_t Index, double I) { return stub_get(); }
int32_t SetExternalInput(int32_t Index, double I) { return stub_set(); }
int32_t GetExtraSetting(int32_t Index, int32_t* lGet, double* dGet, char* sGet) { return stub_get(); }
int32_t SetExtraSetting(int32_t Index, int32_t lSet, double dSet, char* sSet) { return stub_set(); }
uint16_t GetExposure(uint16_t E) { return 0; }
int32_t SetExposure(uint16_t E) { return stub_set(); }
uint16_t GetExposure2(uint16_t E2) { return 0; }
int32_t SetExposure2(uint16_t E2) { return stub_set(); }
double GetExposureNumEx(int32_t num, int32_t arr, double E) { return stub_get(); }
int32_t SetExposureNumEx(int32_t num, int32_t arr, double E) { return stub_set(); }
unsigned char GetExposureMode(unsigned char EM) { return 0; }
int32_t SetExposureMode(unsigned char EM) { return stub_set(); }
int32_t GetExposureRange(int32_t ER) { return stub_get(); }
double GetExposureRangeEx(int32_t ER) { return stub_get(); }
int32_t GetAutoExposureSetting(int32_t num, int32_t AES, int32_t* iVal, double* dVal) { return stub_get(); }
int32_t SetAutoExposureSetting(int32_t num, int32_t AES, int32_t iVal, double dVal) { return stub_set(); }
uint16_t GetResultMode(uint16_t RM) { return 0; }
int32_t SetResultMode(uint16_t RM) { return stub_set(); }
uint16_t GetRange(uint16_t R) { return 0; }
int32_t SetRange(uint16_t R) { return stub_set(); }
uint16_t GetPulseMode(uint16_t PM) { return 0; }
int32_t SetPulseMode(uint16_t PM) { return stub_set(); }
int32_t GetPulseDelay(int32_t PD) { return stub_get(); }
int32_t SetPulseDelay(int32_t PD) { return stub_set(); }
int32_t GetPulseIntegration(int32_t PI) { return stub_get(); }
int32_t SetPulseIntegration(int32_t PI) { return stub_set(); }
uint16_t GetWideMode(uint16_t WM) { return 0; }
int32_t SetWideMode(uint16_t WM) { return stub_set(); }
int32_t GetDisplayMode(int32_t DM) { return stub_get(); }
int32_t SetDisplayMode(int32_t DM) { return stub_set(); }
unsigned char GetFastMode(unsigned char FM) { return 0; }
int32_t SetFastMode(unsigned char FM) { return stub_set(); }
unsigned char GetLinewidthMode(unsigned char LM) { return 0; }
int32_t SetLinewidthMode(unsigned char LM) { return stub_set(); }
unsigned char GetDistanceMode(unsigned char DM) { return 0; }
int32_t SetDistanceMode(unsigned char DM) { return stub_set(); }
int32_t GetAutoCalMode(int32_t ACM) { return stub_get(); }
int32_t SetAutoCalMode(int32_t ACM) { return stub_set(); }
int32_t GetAutoCalSetting(int32_t ACS, int32_t* val, int32_t Res1, int32_t* Res2) { return stub_get(); }
int32_t SetAutoCalSetting(int32_t ACS, int32_t val, int32_t Res1, int32_t Res2) { return stub_set(); }
int32_t GetActiveChannel(int32_t Mode, int32_t* Port, int32_t Res1) { return stub_get(); }
int32_t SetActiveChannel(int32_t Mode, int32_t Port, int32_t CH, int32_t Res1) { return stub_set(); }
int32_t SetOperationFile(char* lpFile) { return stub_set(); }
int32_t Calibration(int32_t Type, int32_t Unit, double Value, int32_t Channel) { return stub_set(); }
int32_t PowerCalibration(int32_t Unit, double Value, int32_t Channel, int32_t Options, int32_t Res) { return stub_set(); }
int32_t RaiseMeasurementEvent(int32_t Mode) { return stub_set(); }
int32_t TriggerMeasurement(int32_t Action) { return stub_set(); }
int32_t GetTriggerState(int32_t TS) { return stub_get(); }
int32_t GetInterval(int32_t I) { return stub_get(); }
int32_t SetInterval(int32_t I) { return stub_set(); }
unsigned char GetIntervalMode(unsigned char IM) { return 0; }
int32_t SetIntervalMode(unsigned char IM) { return stub_set(); }
double GetInternalTriggerRate(double TR) { return stub_get(); }
int32_t SetInternalTriggerRate(double TR) { return stub_set(); }
int32_t GetBackground(int32_t BG) { return stub_get(); }
int32_t SetBackground(int32_t BG) { return stub_set(); }
int32_t GetAveragingSettingNum(int32_t num, int32_t AS, int32_t Value) { return stub_get(); }
int32_t SetAveragingSettingNum(int32_t num, int32_t AS, int32_t Value) { return stub_set(); }
unsigned char GetLinkState(unsigned char LS) { return 0; }
int32_t SetLinkState(unsigned char LS) { return stub_set(); }
void LinkSettingsDlg(void) { }
int32_t GetPatternItemSize(int32_t Index) { return stub_get(); }
int32_t GetPatternItemCount(int32_t Index) { return stub_get(); }
uintptr_t GetPattern(int32_t Index) { return 0; }
uintptr_t GetPatternNum(int32_t Chn, int32_t Index) { return 0; }
int32_t GetPatternData(int32_t Index, uintptr_t PArray) { return stub_get(); }
int32_t GetPatternDataNum(int32_t Chn, int32_t Index, uintptr_t PArray) { return stub_get(); }
int32_t SetPattern(int32_t Index, int32_t iEnable) { return stub_set(); }
int32_t SetPatternData(int32_t Index, uintptr_t PArray) { return stub_set(); }
unsigned char GetAnalysisMode(unsigned char AM) { return 0; }
int32_t SetAnalysisMode(unsigned char AM) { return stub_set(); }
int32_t GetAnalysisItemSize(int32_t Index) { return stub_get(); }
int32_t GetAnalysisItemCount(int32_t Index) { return stub_get(); }
uintptr_t GetAnalysis(int32_t Index) { return 0; }
int32_t GetAnalysisData(int32_t Index, uintptr_t PArray) { return stub_get(); }
int32_t SetAnalysis(int32_t Index, int32_t iEnable) { return stub_set(); }
int32_t GetMinPeak(int32_t M1) { return stub_get(); }
int32_t GetMinPeak2(int32_t M2) { return stub_get(); }
int32_t GetMaxPeak(int32_t X1) { return stub_get(); }
int32_t GetMaxPeak2(int32_t X2) { return stub_get(); }
int32_t GetAvgPeak(int32_t A1) { return stub_get(); }
int32_t GetAvgPeak2(int32_t A2) { return stub_get(); }
int32_t SetAvgPeak(int32_t PA) { return stub_set(); }
int32_t GetAmplitudeNum(int32_t num, int32_t Index, int32_t A) { return stub_get(); }
double GetIntensityNum(int32_t num, double I) { return stub_get(); }
uint16_t GetDelay(uint16_t D) { return 0; }
int32_t SetDelay(uint16_t D) { return stub_set(); }
uint16_t GetShift(uint16_t S) { return 0; }
int32_t SetShift(uint16_t S) { return stub_set(); }
uint16_t GetShift2(uint16_t S2) { return 0; }
int32_t SetShift2(uint16_t S2) { return stub_set(); }
double GetGain(int32_t num, int32_t index, int32_t mode, double* Gain) { return stub_get(); }
int32_t SetGain(int32_t num, int32_t index, int32_t mode, double Gain) { return stub_set(); }
double GetDeviationReference(double DR) { return stub_get(); }
int32_t SetDeviationReference(double DR) { return stub_set(); }
int32_t GetDeviationSensitivity(int32_t DS) { return stub_get(); }
int32_t SetDeviationSensitivity(int32_t DS) { return stub_set(); }
double GetDeviationSignal(double DS) { return stub_get(); }
int32_t SetDeviationSignal(double DS) { return stub_set(); }
double RaiseDeviationSignal(int32_t iType, double dSignal) { return stub_set(); }
int32_t GetPIDCourse(char* PIDC) { return stub_get(); }
int32_t SetPIDCourse(char* PIDC) { return stub_set(); }
int32_t GetPIDCourseNum(int32_t Port, char* PIDC) { return stub_get(); }
int32_t SetPIDCourseNum(int32_t Port, char* PIDC) { return stub_set(); }
int32_t GetPIDSetting(int32_t PS, int32_t Port, int32_t* iSet, double* dSet) { return stub_get(); }
int32_t SetPIDSetting(int32_t PS, int32_t Port, int32_t iSet, double dSet) { return stub_set(); }
int32_t GetLaserControlSetting(int32_t PS, int32_t Port, int32_t* iSet, double* dSet, char* sSet) { return stub_get(); }
int32_t SetLaserControlSetting(int32_t PS, int32_t Port, int32_t iSet, double dSet, char* sSet) { return stub_set(); }
int32_t ClearPIDHistory(int32_t Port) { return stub_set(); }
double ConvertUnit(double Val, int32_t uFrom, int32_t uTo) { return stub_set(); }
double ConvertDeltaUnit(double Base, double Delta, int32_t uBase, int32_t uFrom, int32_t uTo) { return stub_set(); }
unsigned char GetReduced(unsigned char R) { return 0; }
int32_t SetReduced(unsigned char R) { return stub_set(); }
uint16_t GetScale(uint16_t S) { return 0; }
int32_t SetScale(uint16_t S) { return stub_set(); }
#pragma GCC diagnostic pop

/* ---- control API ---- */

/* A control call: -1 unless ok, else apply under the lock, measurements up to date first. */
#define CONTROL(ok, apply)                                                                        \
    do {                                                                                          \
        if (!(ok))                                                                                \
            return -1;                                                                            \
        enter();                                                                                  \
        apply;                                                                                    \
        leave();                                                                                  \
        return 0;                                                                                 \
    } while (0)

static int is_channel(int32_t c)
{
    return c >= 1 && c <= NCH;
}

int32_t Sim_Reset(uint64_t seed, int32_t nchannels)
{
    if (!is_channel(nchannels))
        return -1;
    pthread_mutex_lock(&S.mu);
    reset(seed, nchannels);
    pthread_cond_broadcast(&S.released);
    leave();
    return 0;
}

int32_t Sim_SetRealtime(int32_t on)
{
    CONTROL(1, (S.base_t = now(), S.mono_base = mono(), S.realtime = on != 0));
}

int32_t Sim_Advance(double seconds)
{
    CONTROL(seconds >= 0 && isfinite(seconds), S.base_t += seconds);
}

double Sim_Now(void)
{
    double t = enter();
    leave();
    return t;
}

void Sim_SetServerRunning(int32_t on)
{
    double t = enter();
    if ((on != 0) != S.running) {
        S.running = on != 0;
        reschedule(t);
    }
    leave();
}

int32_t Sim_SetLaser(int32_t ch, double thz, double power_uw)
{
    CONTROL(is_channel(ch) && thz > 0 && power_uw >= 0 && isfinite(thz) && isfinite(power_uw),
            (S.ch[ch].base_thz = thz, S.ch[ch].power_uw = power_uw));
}

int32_t Sim_SetDrift(int32_t ch, double walk_mhz_per_sqrt_s, double sine_mhz, double period_s)
{
    CONTROL(is_channel(ch) && walk_mhz_per_sqrt_s >= 0 && isfinite(walk_mhz_per_sqrt_s)
                && isfinite(sine_mhz) && period_s > 0 && isfinite(period_s),
            (S.ch[ch].walk_mhz = walk_mhz_per_sqrt_s, S.ch[ch].sine_mhz = sine_mhz,
             S.ch[ch].period_s = period_s));
}

int32_t Sim_SetNoise(int32_t ch, double mhz)
{
    CONTROL(is_channel(ch) && mhz >= 0 && isfinite(mhz), S.ch[ch].noise_mhz = mhz);
}

int32_t Sim_SetGain(int32_t port, double mhz_per_volt)
{
    CONTROL(!bad_port(port) && isfinite(mhz_per_volt), S.gain[port] = mhz_per_volt);
}

int32_t Sim_MapPort(int32_t port, int32_t ch)
{
    CONTROL(!bad_port(port) && (ch == 0 || is_channel(ch)), S.port_ch[port] = ch);
}

int32_t Sim_SetSignal(int32_t ch, int32_t state)
{
    CONTROL(is_channel(ch) && state >= 0 && state <= 2, S.ch[ch].signal = state);
}

int32_t Sim_InjectNeighbour(int32_t ch)
{
    CONTROL(is_channel(ch), S.ch[ch].neighbour = 1);
}

int32_t Sim_ModeHop(int32_t ch, double ghz)
{
    CONTROL(is_channel(ch) && isfinite(ghz) && S.ch[ch].base_thz + ghz / 1000.0 > 0,
            S.ch[ch].base_thz += ghz / 1000.0);
}

int32_t Sim_SetReadDelay(double ms)
{
    CONTROL(ms >= 0 && ms <= 60000, S.delay_ms = ms);
}

void Sim_Hold(int32_t on)
{
    pthread_mutex_lock(&S.mu);
    S.hold = on != 0;
    if (!S.hold)
        pthread_cond_broadcast(&S.released);
    leave();
}

void Sim_Release(void)
{
    Sim_Hold(0);
}

double Sim_TrueFrequency(int32_t ch)
{
    if (!is_channel(ch))
        return -1;
    double f = true_frequency(ch, enter());
    leave();
    return f;
}

int32_t Sim_MeasurementCount(int32_t ch)
{
    if (!is_channel(ch))
        return -1;
    enter();
    int32_t n = S.ch[ch].count > INT32_MAX ? INT32_MAX : (int32_t)S.ch[ch].count;
    leave();
    return n;
}
