"""ICU-admission prediction from a COVID-19 patient's first two hours (Sirio-Libanes data).

- ``dataset``: the workbook, its documented preparation and patient-grouped folds;
- ``predictor``: ``IcuPredictor``, the one interface both backends implement, and ``predict``;
- ``local``: the embedded default (a LightGBM/XGBoost model chosen by FLAML, TreeSHAP);
- ``integratedml``: IRIS IntegratedML over DB-API, its SQL built by small pure functions;
- ``training``, ``validation``, ``metrics``, ``model_card``: how local models are made and
  measured.
- ``service`` (``IcuService``: what the API routes of both runtimes call), ``bodies`` (request
  bodies and their schema), ``columns`` (column labels, the web form's fields).

Clients (API routes, the web panel, the IRIS business operation) need only::

    from aistack.icu.local import load_local
    from aistack.icu.predictor import predict

    predictor = load_local()              # or IntegratedMLPredictor.open(connection, features)
    answers = predict(predictor, rows)    # probability, label, top features per row
"""
