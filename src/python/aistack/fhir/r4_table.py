"""The FHIR R4 (4.0.1) element table: which elements each type used here has in R4.

fhir.resources offers R4B (4.3.0) models, a superset of R4 in places (R4B-only resource
types and datatypes, Extension ``valueCodeableReference``/``valueRatioRange``, more
``Observation.subject``/``DiagnosticReport.subject`` target types). The R4 FHIR servers the
resources go to reject those, so :mod:`aistack.fhir.r4` checks every resource against this
table. It is data, derived mechanically from the FHIR 4.0.1 StructureDefinitions (as shipped
in the R4 models of fhir.resources 6.1.0) for the types reachable from Observation,
DiagnosticReport, Media, Device, Provenance and Bundle; RiskAssessment and its prediction
were added from the 4.0.1 definition (unchanged in R4B: a test holds them to R4B's model).
A type missing here is refused, never assumed valid.

Format: a type name, then one indented line per element: ``name type [reference targets]``.
Lower-case types are primitives; ``Resource`` is any resource, by its ``resourceType``.
"""

RESOURCE_TYPE_NAMES = """
Account ActivityDefinition AdverseEvent AllergyIntolerance Appointment AppointmentResponse
AuditEvent Basic Binary BiologicallyDerivedProduct BodyStructure Bundle CapabilityStatement
CarePlan CareTeam CatalogEntry ChargeItem ChargeItemDefinition Claim ClaimResponse
ClinicalImpression CodeSystem Communication CommunicationRequest CompartmentDefinition
Composition ConceptMap Condition Consent Contract Coverage CoverageEligibilityRequest
CoverageEligibilityResponse DetectedIssue Device DeviceDefinition DeviceMetric DeviceRequest
DeviceUseStatement DiagnosticReport DocumentManifest DocumentReference EffectEvidenceSynthesis
Encounter Endpoint EnrollmentRequest EnrollmentResponse EpisodeOfCare EventDefinition Evidence
EvidenceVariable ExampleScenario ExplanationOfBenefit FamilyMemberHistory Flag Goal
GraphDefinition Group GuidanceResponse HealthcareService ImagingStudy Immunization
ImmunizationEvaluation ImmunizationRecommendation ImplementationGuide InsurancePlan Invoice
Library Linkage List Location Measure MeasureReport Media Medication MedicationAdministration
MedicationDispense MedicationKnowledge MedicationRequest MedicationStatement MedicinalProduct
MedicinalProductAuthorization MedicinalProductContraindication MedicinalProductIndication
MedicinalProductIngredient MedicinalProductInteraction MedicinalProductManufactured
MedicinalProductPackaged MedicinalProductPharmaceutical MedicinalProductUndesirableEffect
MessageDefinition MessageHeader MolecularSequence NamingSystem NutritionOrder Observation
ObservationDefinition OperationDefinition OperationOutcome Organization
OrganizationAffiliation Parameters Patient PaymentNotice PaymentReconciliation Person
PlanDefinition Practitioner PractitionerRole Procedure Provenance Questionnaire
QuestionnaireResponse RelatedPerson RequestGroup ResearchDefinition ResearchElementDefinition
ResearchStudy ResearchSubject RiskAssessment RiskEvidenceSynthesis Schedule SearchParameter
ServiceRequest Slot Specimen SpecimenDefinition StructureDefinition StructureMap Subscription
Substance SubstanceNucleicAcid SubstancePolymer SubstanceProtein SubstanceReferenceInformation
SubstanceSourceMaterial SubstanceSpecification SupplyDelivery SupplyRequest Task
TerminologyCapabilities TestReport TestScript ValueSet VerificationResult VisionPrescription
"""

ELEMENT_TABLE = """
Address
  city string
  country string
  district string
  extension Extension
  id string
  line string
  period Period
  postalCode string
  state string
  text string
  type code
  use code
Age
  code code
  comparator code
  extension Extension
  id string
  system uri
  unit string
  value decimal
Annotation
  authorReference Reference Practitioner Patient RelatedPerson Organization
  authorString string
  extension Extension
  id string
  text markdown
  time dateTime
Attachment
  contentType code
  creation dateTime
  data base64Binary
  extension Extension
  hash base64Binary
  id string
  language code
  size unsignedInt
  title string
  url url
Bundle
  entry BundleEntry
  id id
  identifier Identifier
  implicitRules uri
  language code
  link BundleLink
  meta Meta
  signature Signature
  timestamp instant
  total unsignedInt
  type code
BundleEntry
  extension Extension
  fullUrl uri
  id string
  link BundleLink
  modifierExtension Extension
  request BundleEntryRequest
  resource Resource
  response BundleEntryResponse
  search BundleEntrySearch
BundleEntryRequest
  extension Extension
  id string
  ifMatch string
  ifModifiedSince instant
  ifNoneExist string
  ifNoneMatch string
  method code
  modifierExtension Extension
  url uri
BundleEntryResponse
  etag string
  extension Extension
  id string
  lastModified instant
  location uri
  modifierExtension Extension
  outcome Resource
  status string
BundleEntrySearch
  extension Extension
  id string
  mode code
  modifierExtension Extension
  score decimal
BundleLink
  extension Extension
  id string
  modifierExtension Extension
  relation string
  url uri
CodeableConcept
  coding Coding
  extension Extension
  id string
  text string
Coding
  code code
  display string
  extension Extension
  id string
  system uri
  userSelected boolean
  version string
ContactDetail
  extension Extension
  id string
  name string
  telecom ContactPoint
ContactPoint
  extension Extension
  id string
  period Period
  rank positiveInt
  system code
  use code
  value string
Contributor
  contact ContactDetail
  extension Extension
  id string
  name string
  type code
Count
  code code
  comparator code
  extension Extension
  id string
  system uri
  unit string
  value decimal
DataRequirement
  codeFilter DataRequirementCodeFilter
  dateFilter DataRequirementDateFilter
  extension Extension
  id string
  limit positiveInt
  mustSupport string
  profile canonical StructureDefinition
  sort DataRequirementSort
  subjectCodeableConcept CodeableConcept
  subjectReference Reference Group
  type code
DataRequirementCodeFilter
  code Coding
  extension Extension
  id string
  path string
  searchParam string
  valueSet canonical ValueSet
DataRequirementDateFilter
  extension Extension
  id string
  path string
  searchParam string
  valueDateTime dateTime
  valueDuration Duration
  valuePeriod Period
DataRequirementSort
  direction code
  extension Extension
  id string
  path string
Device
  contact ContactPoint
  contained Resource
  definition Reference DeviceDefinition
  deviceName DeviceDeviceName
  distinctIdentifier string
  expirationDate dateTime
  extension Extension
  id id
  identifier Identifier
  implicitRules uri
  language code
  location Reference Location
  lotNumber string
  manufactureDate dateTime
  manufacturer string
  meta Meta
  modelNumber string
  modifierExtension Extension
  note Annotation
  owner Reference Organization
  parent Reference Device
  partNumber string
  patient Reference Patient
  property DeviceProperty
  safety CodeableConcept
  serialNumber string
  specialization DeviceSpecialization
  status code
  statusReason CodeableConcept
  text Narrative
  type CodeableConcept
  udiCarrier DeviceUdiCarrier
  url uri
  version DeviceVersion
DeviceDeviceName
  extension Extension
  id string
  modifierExtension Extension
  name string
  type code
DeviceProperty
  extension Extension
  id string
  modifierExtension Extension
  type CodeableConcept
  valueCode CodeableConcept
  valueQuantity Quantity
DeviceSpecialization
  extension Extension
  id string
  modifierExtension Extension
  systemType CodeableConcept
  version string
DeviceUdiCarrier
  carrierAIDC base64Binary
  carrierHRF string
  deviceIdentifier string
  entryType code
  extension Extension
  id string
  issuer uri
  jurisdiction uri
  modifierExtension Extension
DeviceVersion
  component Identifier
  extension Extension
  id string
  modifierExtension Extension
  type CodeableConcept
  value string
DiagnosticReport
  basedOn Reference CarePlan ImmunizationRecommendation MedicationRequest NutritionOrder
    ServiceRequest
  category CodeableConcept
  code CodeableConcept
  conclusion string
  conclusionCode CodeableConcept
  contained Resource
  effectiveDateTime dateTime
  effectivePeriod Period
  encounter Reference Encounter
  extension Extension
  id id
  identifier Identifier
  imagingStudy Reference ImagingStudy
  implicitRules uri
  issued instant
  language code
  media DiagnosticReportMedia
  meta Meta
  modifierExtension Extension
  performer Reference Practitioner PractitionerRole Organization CareTeam
  presentedForm Attachment
  result Reference Observation
  resultsInterpreter Reference Practitioner PractitionerRole Organization CareTeam
  specimen Reference Specimen
  status code
  subject Reference Patient Group Device Location
  text Narrative
DiagnosticReportMedia
  comment string
  extension Extension
  id string
  link Reference Media
  modifierExtension Extension
Distance
  code code
  comparator code
  extension Extension
  id string
  system uri
  unit string
  value decimal
Dosage
  additionalInstruction CodeableConcept
  asNeededBoolean boolean
  asNeededCodeableConcept CodeableConcept
  doseAndRate DosageDoseAndRate
  extension Extension
  id string
  maxDosePerAdministration Quantity
  maxDosePerLifetime Quantity
  maxDosePerPeriod Ratio
  method CodeableConcept
  modifierExtension Extension
  patientInstruction string
  route CodeableConcept
  sequence integer
  site CodeableConcept
  text string
  timing Timing
DosageDoseAndRate
  doseQuantity Quantity
  doseRange Range
  extension Extension
  id string
  rateQuantity Quantity
  rateRange Range
  rateRatio Ratio
  type CodeableConcept
Duration
  code code
  comparator code
  extension Extension
  id string
  system uri
  unit string
  value decimal
Expression
  description string
  expression string
  extension Extension
  id string
  language code
  name id
  reference uri
Extension
  extension Extension
  id string
  url uri
  valueAddress Address
  valueAge Age
  valueAnnotation Annotation
  valueAttachment Attachment
  valueBase64Binary base64Binary
  valueBoolean boolean
  valueCanonical canonical
  valueCode code
  valueCodeableConcept CodeableConcept
  valueCoding Coding
  valueContactDetail ContactDetail
  valueContactPoint ContactPoint
  valueContributor Contributor
  valueCount Count
  valueDataRequirement DataRequirement
  valueDate date
  valueDateTime dateTime
  valueDecimal decimal
  valueDistance Distance
  valueDosage Dosage
  valueDuration Duration
  valueExpression Expression
  valueHumanName HumanName
  valueId id
  valueIdentifier Identifier
  valueInstant instant
  valueInteger integer
  valueMarkdown markdown
  valueMeta Meta
  valueMoney Money
  valueOid oid
  valueParameterDefinition ParameterDefinition
  valuePeriod Period
  valuePositiveInt positiveInt
  valueQuantity Quantity
  valueRange Range
  valueRatio Ratio
  valueReference Reference
  valueRelatedArtifact RelatedArtifact
  valueSampledData SampledData
  valueSignature Signature
  valueString string
  valueTime time
  valueTiming Timing
  valueTriggerDefinition TriggerDefinition
  valueUnsignedInt unsignedInt
  valueUri uri
  valueUrl url
  valueUsageContext UsageContext
  valueUuid uuid
HumanName
  extension Extension
  family string
  given string
  id string
  period Period
  prefix string
  suffix string
  text string
  use code
Identifier
  assigner Reference Organization
  extension Extension
  id string
  period Period
  system uri
  type CodeableConcept
  use code
  value string
Media
  basedOn Reference ServiceRequest CarePlan
  bodySite CodeableConcept
  contained Resource
  content Attachment
  createdDateTime dateTime
  createdPeriod Period
  device Reference Device DeviceMetric Device
  deviceName string
  duration decimal
  encounter Reference Encounter
  extension Extension
  frames positiveInt
  height positiveInt
  id id
  identifier Identifier
  implicitRules uri
  issued instant
  language code
  meta Meta
  modality CodeableConcept
  modifierExtension Extension
  note Annotation
  operator Reference Practitioner PractitionerRole Organization CareTeam Patient Device
    RelatedPerson
  partOf Reference Resource
  reasonCode CodeableConcept
  status code
  subject Reference Patient Practitioner PractitionerRole Group Device Specimen Location
  text Narrative
  type CodeableConcept
  view CodeableConcept
  width positiveInt
Meta
  extension Extension
  id string
  lastUpdated instant
  profile canonical StructureDefinition
  security Coding
  source uri
  tag Coding
  versionId id
Money
  currency code
  extension Extension
  id string
  value decimal
Narrative
  div xhtml
  extension Extension
  id string
  status code
Observation
  basedOn Reference CarePlan DeviceRequest ImmunizationRecommendation MedicationRequest
    NutritionOrder ServiceRequest
  bodySite CodeableConcept
  category CodeableConcept
  code CodeableConcept
  component ObservationComponent
  contained Resource
  dataAbsentReason CodeableConcept
  derivedFrom Reference DocumentReference ImagingStudy Media QuestionnaireResponse Observation
    MolecularSequence
  device Reference Device DeviceMetric
  effectiveDateTime dateTime
  effectiveInstant instant
  effectivePeriod Period
  effectiveTiming Timing
  encounter Reference Encounter
  extension Extension
  focus Reference Resource
  hasMember Reference Observation QuestionnaireResponse MolecularSequence
  id id
  identifier Identifier
  implicitRules uri
  interpretation CodeableConcept
  issued instant
  language code
  meta Meta
  method CodeableConcept
  modifierExtension Extension
  note Annotation
  partOf Reference MedicationAdministration MedicationDispense MedicationStatement Procedure
    Immunization ImagingStudy
  performer Reference Practitioner PractitionerRole Organization CareTeam Patient RelatedPerson
  referenceRange ObservationReferenceRange
  specimen Reference Specimen
  status code
  subject Reference Patient Group Device Location
  text Narrative
  valueBoolean boolean
  valueCodeableConcept CodeableConcept
  valueDateTime dateTime
  valueInteger integer
  valuePeriod Period
  valueQuantity Quantity
  valueRange Range
  valueRatio Ratio
  valueSampledData SampledData
  valueString string
  valueTime time
ObservationComponent
  code CodeableConcept
  dataAbsentReason CodeableConcept
  extension Extension
  id string
  interpretation CodeableConcept
  modifierExtension Extension
  referenceRange ObservationReferenceRange
  valueBoolean boolean
  valueCodeableConcept CodeableConcept
  valueDateTime dateTime
  valueInteger integer
  valuePeriod Period
  valueQuantity Quantity
  valueRange Range
  valueRatio Ratio
  valueSampledData SampledData
  valueString string
  valueTime time
ObservationReferenceRange
  age Range
  appliesTo CodeableConcept
  extension Extension
  high Quantity
  id string
  low Quantity
  modifierExtension Extension
  text string
  type CodeableConcept
ParameterDefinition
  documentation string
  extension Extension
  id string
  max string
  min integer
  name code
  profile canonical StructureDefinition
  type code
  use code
Period
  end dateTime
  extension Extension
  id string
  start dateTime
Provenance
  activity CodeableConcept
  agent ProvenanceAgent
  contained Resource
  entity ProvenanceEntity
  extension Extension
  id id
  implicitRules uri
  language code
  location Reference Location
  meta Meta
  modifierExtension Extension
  occurredDateTime dateTime
  occurredPeriod Period
  policy uri
  reason CodeableConcept
  recorded instant
  signature Signature
  target Reference Resource
  text Narrative
ProvenanceAgent
  extension Extension
  id string
  modifierExtension Extension
  onBehalfOf Reference Practitioner PractitionerRole RelatedPerson Patient Device Organization
  role CodeableConcept
  type CodeableConcept
  who Reference Practitioner PractitionerRole RelatedPerson Patient Device Organization
ProvenanceEntity
  agent ProvenanceAgent
  extension Extension
  id string
  modifierExtension Extension
  role code
  what Reference Resource
Quantity
  code code
  comparator code
  extension Extension
  id string
  system uri
  unit string
  value decimal
Range
  extension Extension
  high Quantity
  id string
  low Quantity
Ratio
  denominator Quantity
  extension Extension
  id string
  numerator Quantity
Reference
  display string
  extension Extension
  id string
  identifier Identifier
  reference string
  type uri
RelatedArtifact
  citation markdown
  display string
  document Attachment
  extension Extension
  id string
  label string
  resource canonical Resource
  type code
  url url
RiskAssessment
  basedOn Reference Resource
  basis Reference Resource
  code CodeableConcept
  condition Reference Condition
  contained Resource
  encounter Reference Encounter
  extension Extension
  id id
  identifier Identifier
  implicitRules uri
  language code
  meta Meta
  method CodeableConcept
  mitigation string
  modifierExtension Extension
  note Annotation
  occurrenceDateTime dateTime
  occurrencePeriod Period
  parent Reference Resource
  performer Reference Practitioner PractitionerRole Device
  prediction RiskAssessmentPrediction
  reasonCode CodeableConcept
  reasonReference Reference Condition Observation DiagnosticReport DocumentReference
  status code
  subject Reference Patient Group
  text Narrative
RiskAssessmentPrediction
  extension Extension
  id string
  modifierExtension Extension
  outcome CodeableConcept
  probabilityDecimal decimal
  probabilityRange Range
  qualitativeRisk CodeableConcept
  rationale string
  relativeRisk decimal
  whenPeriod Period
  whenRange Range
SampledData
  data string
  dimensions positiveInt
  extension Extension
  factor decimal
  id string
  lowerLimit decimal
  origin Quantity
  period decimal
  upperLimit decimal
Signature
  data base64Binary
  extension Extension
  id string
  onBehalfOf Reference Practitioner PractitionerRole RelatedPerson Patient Device Organization
  sigFormat code
  targetFormat code
  type Coding
  when instant
  who Reference Practitioner PractitionerRole RelatedPerson Patient Device Organization
Timing
  code CodeableConcept
  event dateTime
  extension Extension
  id string
  modifierExtension Extension
  repeat TimingRepeat
TimingRepeat
  boundsDuration Duration
  boundsPeriod Period
  boundsRange Range
  count positiveInt
  countMax positiveInt
  dayOfWeek code
  duration decimal
  durationMax decimal
  durationUnit code
  extension Extension
  frequency positiveInt
  frequencyMax positiveInt
  id string
  offset unsignedInt
  period decimal
  periodMax decimal
  periodUnit code
  timeOfDay time
  when code
TriggerDefinition
  condition Expression
  data DataRequirement
  extension Extension
  id string
  name string
  timingDate date
  timingDateTime dateTime
  timingReference Reference Schedule
  timingTiming Timing
  type code
UsageContext
  code Coding
  extension Extension
  id string
  valueCodeableConcept CodeableConcept
  valueQuantity Quantity
  valueRange Range
  valueReference Reference PlanDefinition ResearchStudy InsurancePlan HealthcareService Group
    Location Organization
"""
